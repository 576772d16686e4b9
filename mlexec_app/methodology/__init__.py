"""The CS230 project execution method as pure functions: no Django, no torch.

Modules, one job each:

- :mod:`.metrics`: metric direction; everything is normalised to an error rate inside.
- :mod:`.uncertainty`: Wilson intervals for an error rate and Newcombe intervals for a gap.
- :mod:`.registry`: rules as small classes with ids, in registries.
- :mod:`.classify`: data type x abstraction layer -> recommended approach and first steps.
- :mod:`.diagnosis`: avoidable bias, variance, data mismatch, dev-set overfitting.
- :mod:`.error_analysis`: each error category's ceiling.
- :mod:`.planner`: interventions ranked in the fixed priority order.
- :mod:`.cost`: break-even volume between an LLM API and a fine-tuned small model.
- :mod:`.gates`: what must hold to move a project from one stage to the next.
"""

from __future__ import annotations
