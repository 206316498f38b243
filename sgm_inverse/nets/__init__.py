"""Score networks. `NETWORKS` maps a config's network type to its class (one small dict)."""
from .classifier import CLASSIFIERS, CleanClassifier, NoiseConditionalClassifier
from .unet import UNet, UNetConfig

NETWORKS = {"UNet": UNet}

__all__ = ["UNet", "UNetConfig", "NETWORKS", "NoiseConditionalClassifier", "CleanClassifier", "CLASSIFIERS"]
