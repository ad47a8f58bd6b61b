"""Import shim: vit-keras 0.1.2 imports pkg_resources (removed from setuptools) for a class-name file the fixtures never read."""


def __getattr__(name: str):
    raise RuntimeError(
        f"pkg_resources.{name} is not available in the fixture environment (tests/reference/shims/README.md)"
    )
