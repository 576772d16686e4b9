"""Where to start: data type x abstraction layer -> recommended approach and first steps.

The table encodes common practice: gradient-boosted trees for tabular data, pre-trained
networks for perception and language, a prompted LLM as the fastest first prototype for text.
Where the chosen layer fits the data poorly, the recommendation says so.
"""

from __future__ import annotations

from dataclasses import dataclass

DATA_TYPES = ("tabular", "image", "audio", "text", "time_series", "other")
LAYERS = ("llm_prompting", "deep_learning", "traditional_ml")


@dataclass(frozen=True)
class Recommendation:
    data_type: str
    abstraction_layer: str
    approach: str
    first_steps: tuple[str, ...]
    fit: str  # "good", "possible" or "poor": how well the chosen layer suits the data
    caution: str = ""


COMMON_FIRST_STEPS = (
    "Write down the metric, the target and a human-level (Bayes-error) estimate.",
    "Set up train, train-dev, dev and test splits; dev and test from the distribution you serve.",
)

_APPROACH: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    ("tabular", "traditional_ml"): (
        "good",
        "Gradient-boosted trees (or a linear model as the baseline).",
        ("Fit a linear/logistic baseline.", "Fit gradient-boosted trees with early stopping."),
    ),
    ("tabular", "deep_learning"): (
        "possible",
        "A small MLP with embeddings for categorical columns, compared against boosted trees.",
        ("Fit gradient-boosted trees first as the bar to beat.", "Then try a small MLP."),
    ),
    ("tabular", "llm_prompting"): (
        "poor",
        "LLMs rarely beat trees on numeric tables; use them to featurise free-text columns.",
        ("Fit gradient-boosted trees.", "Prompt an LLM only for text columns, as features."),
    ),
    ("image", "deep_learning"): (
        "good",
        "Fine-tune a pre-trained convolutional network or vision transformer.",
        ("Fine-tune a small pre-trained backbone.", "Overfit a small batch to check the loop."),
    ),
    ("image", "traditional_ml"): (
        "poor",
        "Hand-made features rarely compete; use pre-trained embeddings with a linear head.",
        ("Extract pre-trained embeddings.", "Fit a logistic regression on them."),
    ),
    ("image", "llm_prompting"): (
        "possible",
        "A multimodal LLM, zero- or few-shot, as a fast prototype and a labelling aid.",
        ("Prompt a multimodal model on 100 dev images.", "Compare with a fine-tuned backbone."),
    ),
    ("audio", "deep_learning"): (
        "good",
        "Fine-tune a pre-trained speech/audio model on spectrograms or raw audio.",
        ("Fine-tune a pre-trained audio encoder.", "Listen to 100 dev errors."),
    ),
    ("audio", "traditional_ml"): (
        "poor",
        "MFCC features with a classical classifier: a baseline only.",
        ("Extract MFCCs and fit a baseline.", "Move to a pre-trained audio model."),
    ),
    ("audio", "llm_prompting"): (
        "possible",
        "Transcribe, then prompt an LLM on the text.",
        ("Transcribe a dev sample.", "Prompt an LLM on the transcripts."),
    ),
    ("text", "llm_prompting"): (
        "good",
        "Prompt an LLM for the first prototype; distil into a fine-tuned small model at volume.",
        ("Prompt on 100 dev examples and read every error.", "Fill in the cost model."),
    ),
    ("text", "deep_learning"): (
        "good",
        "Fine-tune a pre-trained transformer encoder.",
        ("Fine-tune a small pre-trained encoder.", "Compare with a prompted LLM."),
    ),
    ("text", "traditional_ml"): (
        "possible",
        "TF-IDF with a linear model: a strong, cheap baseline.",
        ("Fit TF-IDF plus logistic regression.", "Read 100 dev errors."),
    ),
    ("time_series", "traditional_ml"): (
        "good",
        "Lag features with gradient-boosted trees, against a seasonal-naive baseline.",
        ("Fit the seasonal-naive baseline.", "Split by time, never at random."),
    ),
    ("time_series", "deep_learning"): (
        "possible",
        "A temporal network, only once trees on lag features are the bar to beat.",
        ("Fit trees on lag features first.", "Split by time, never at random."),
    ),
    ("time_series", "llm_prompting"): (
        "poor",
        "LLMs are weak forecasters; use them for the text around the series, if any.",
        ("Fit the seasonal-naive baseline.", "Fit trees on lag features."),
    ),
}


def classify(data_type: str, abstraction_layer: str) -> Recommendation:
    """Recommend an approach and first steps for this data type and abstraction layer."""
    if data_type not in DATA_TYPES:
        raise ValueError(f"Unknown data type {data_type!r}; expected one of {DATA_TYPES}.")
    if abstraction_layer not in LAYERS:
        raise ValueError(f"Unknown layer {abstraction_layer!r}; expected one of {LAYERS}.")
    entry = _APPROACH.get((data_type, abstraction_layer))
    if entry is None:
        entry = (
            "possible",
            "Start with the simplest model that could work, and a human-level estimate.",
            ("Build the simplest end-to-end baseline.", "Read 100 dev errors."),
        )
    fit, approach, steps = entry
    caution = "" if fit != "poor" else f"{abstraction_layer} is a poor fit for {data_type} data."
    return Recommendation(
        data_type, abstraction_layer, approach, COMMON_FIRST_STEPS + steps, fit, caution
    )
