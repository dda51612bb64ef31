"""galspec-hf: IFU spectroscopy with one fiber, as a Hugging Face model package."""

__version__ = "0.1.0.dev0"
