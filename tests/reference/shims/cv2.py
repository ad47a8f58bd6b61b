"""Import shim: vit-keras 0.1.2 imports cv2 for image and URL helpers the fixtures never call."""


def __getattr__(name: str):
    raise RuntimeError(f"cv2.{name} is not available in the fixture environment (tests/reference/shims/README.md)")
