"""Client-side helpers of the safety-policy service: violation messages and their listener."""

from gaelp.safety.violations import ViolationHandler, ViolationListener, violation_message

__all__ = ["ViolationHandler", "ViolationListener", "violation_message"]
