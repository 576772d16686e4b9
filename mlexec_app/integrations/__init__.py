"""Training-framework callbacks built on :mod:`mlexec_app.client` (optional extras).

- :mod:`mlexec_app.integrations.lightning`: ``MlexecCallback`` for PyTorch Lightning
  (``pip install "django-ai-stack[lightning]"``).
- :mod:`mlexec_app.integrations.huggingface`: ``MlexecTrainerCallback`` for Transformers'
  ``Trainer`` (``pip install "django-ai-stack[transformers]"``).

Neither imports Django; each imports its framework only when loaded.
"""
