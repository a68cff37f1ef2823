"""Running an exported SSDLite file without PyTorch."""
