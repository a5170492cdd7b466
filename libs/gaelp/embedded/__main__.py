import sys

from gaelp.embedded.runner import main

sys.exit(main())
