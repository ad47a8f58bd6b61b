"""`make demo`: the study in miniature (placeholder until the demo lands)."""
print("make demo: the end-to-end demo is not built yet; see the README.")
