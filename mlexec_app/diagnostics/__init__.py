"""Real PyTorch diagnostics: they train models to produce evidence for the diagnosis.

Importing this package is cheap; torch, scikit-learn and cleanlab load inside the functions
that train. Start with :func:`mlexec_app.diagnostics.pipeline.run_diagnostics`.
"""
