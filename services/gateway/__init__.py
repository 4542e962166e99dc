"""The HTTP/JSON gateway for web frontends: grpc-gateway-style transcoding driven by the protos."""
