"""Generated protobuf and gRPC code of protos/gaelp/v1; do not edit."""
