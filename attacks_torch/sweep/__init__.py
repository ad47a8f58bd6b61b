"""The adversarial-alignment sweep: the model-spec grammar (``specs``), its settings (``config``),
the output folder that owns every path (``store``) and its files' columns and format (``tables``),
the resume fingerprint (``fingerprint``), the runner (``runner``, with ``resume``, ``batches`` and
``summary``) and the ``torchrun`` helper (``distributed``)."""

from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.runner import ModelOutcome, run_sweep
from attacks_torch.sweep.specs import ModelSpec, parse_model_spec, parse_models, parse_pairs
from attacks_torch.sweep.store import ModelFolder, SweepFolder
from attacks_torch.sweep.summary import summarize_rows
from attacks_torch.sweep.tables import MEASURES, RESULT_COLUMNS, SUMMARY_COLUMNS, read_table

__all__ = [
    "MEASURES",
    "RESULT_COLUMNS",
    "SUMMARY_COLUMNS",
    "ModelFolder",
    "ModelOutcome",
    "ModelSpec",
    "SweepConfig",
    "SweepError",
    "SweepFolder",
    "parse_model_spec",
    "parse_models",
    "parse_pairs",
    "read_table",
    "run_sweep",
    "summarize_rows",
]
