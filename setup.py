from setuptools import find_packages, setup

with open("fworker/version.py", encoding="utf-8") as f:
    version = next(line.split('"')[1] for line in f if line.startswith("__version__"))
with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="fworker",
    version=version,
    description="A Flamenco render-farm Worker (gevent, durable SQLite update queue)",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["fworker", "fworker.*"]),
    package_data={"fworker": ["commands/blender_scripts/*.py", "devmanager/*.html"]},
    install_requires=[
        "gevent>=24.2,<27",
        "requests>=2.31,<3",
        "configobj>=5.0.8,<6",
        "dataset>=1.6,<3",
        # psutil: finding a child's whole process tree, grandchildren that
        # left its process group included, portably (Linux /proc and macOS).
        "psutil>=5.9,<8",
        # PyJWT: HS256 tokens for registration with a pre-shared secret;
        # a well-kept library instead of our own JOSE encoding.
        "PyJWT>=2.8,<3",
        # prometheus-client: the official metrics text encoder (served by our
        # own gevent server, not its threaded one).
        "prometheus-client>=0.16,<1",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-timeout>=2.2,<3",
            # The plug-in tests pip-install examples/fworker-hello-plugin without
            # build isolation (offline-capable); setuptools 70.1+ builds its
            # editable wheel without the separate 'wheel' package.
            "setuptools>=70.1,<90",
            # The linters .ci/run runs (ruff.toml, mypy.ini), and the stubs mypy reads.
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<3",
            "types-gevent>=24.2,<27",
            "types-psutil>=5.9,<8",
            "types-requests>=2.31,<3",
        ],
    },
    entry_points={
        "console_scripts": [
            "flamenco-worker=fworker.cli:main",
            "flamenco-dev-manager=fworker.devmanager.cli:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
    ],
)
