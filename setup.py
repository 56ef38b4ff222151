"""Install policyopt (the algorithms) and imitation (the experiment layer).

    pip install -e .            # library + scripts' dependencies
    pip install -e .[test]      # + pytest
"""
from setuptools import find_packages, setup

setup(
    name="policyopt",
    version="0.1.0",
    description="GAIL and TRPO (Ho & Ermon 2016) on PyTensor graphs compiled to C",
    python_requires=">=3.11",
    packages=find_packages(include=["policyopt", "policyopt.*", "imitation", "imitation.*"]),
    package_data={"imitation": ["pipelines/*.yaml", "reference/*.csv"]},
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.12",
        "pytensor>=3.0,<4",
        "gymnasium[mujoco]>=1.0",
        "h5py>=3.9",
        "tables>=3.9",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "dask[distributed]>=2024.1",
        "threadpoolctl>=3.1",
        "pandas>=2.0",
    ],
    extras_require={
        # the tests cover every backend (numba comes with pytensor; jax on the CPU) and video
        "test": ["pytest>=7", "jax>=0.4.30", "imageio[ffmpeg]>=2.30", "pygame>=2.1",
                 "ruff>=0.5", "minari>=0.5", "tensorboardX>=2.6",
                 # docs/gail_walkthrough.ipynb is executed by the tests
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
        "numba": ["numba>=0.59"],
        "jax": ["jax>=0.4.30"],
        "cluster": ["dask-jobqueue>=0.8"],
        # scripts/vis_mj.py: MP4 output (imageio-ffmpeg), classic-control rendering (pygame)
        "video": ["imageio[ffmpeg]>=2.30", "pygame>=2.1"],
        # Minari datasets in and out (scripts/import_dataset.py, export_dataset.py)
        "datasets": ["minari>=0.5"],
        # --tensorboard on the training scripts: a light event-file writer, no framework
        "tensorboard": ["tensorboardX>=2.6"],
    },
)
