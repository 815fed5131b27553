"""The installed version of siaran-edge (reported in the status message and --version)."""

from importlib import metadata


def agent_version() -> str:
    try:
        return metadata.version("siaran-edge")
    except metadata.PackageNotFoundError:
        return "0+unknown"
