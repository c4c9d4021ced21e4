"""The rows of a meta-learned model that takes no gradient step on the support.

"Adapted at or above not adapted" needs a "not adapted" that is a usable model. For most
learners that is the meta-model itself at 0 inner steps (``unadapted``). A Proto-MAML learner
(``proto_init``, Triantafillou et al. 2020) sets the classifier rows of the support's classes
from their masked-average prototypes before its inner steps, so its meta-learned rows are
only ever trained as the rows of classes *absent* from a support: the meta-model alone maps
nothing sensible. Its honest no-step reference is the prototype classifier, the support's
prototypes written into the classifier with zero gradient steps (``prototypes (0 steps)``,
what ``landcover adapt --steps 0`` keeps); ``unadapted`` stays as the model that uses no
support at all.
"""

from __future__ import annotations

from landcover.evaluation.fewshot import Method
from landcover.meta.protocol import Learner

#: The meta-model with no support used (0 steps, no prototypes).
UNADAPTED = "unadapted"
#: A Proto-MAML model with the support's prototypes in its classifier and 0 gradient steps.
PROTOTYPES = "prototypes (0 steps)"

#: What each row is, for reports.
DESCRIPTIONS: dict[str, str] = {
    UNADAPTED: "the meta-learned model with no adaptation: 0 inner steps, no support used "
    "(for Proto-MAML also no prototypes, so its classifier is one never trained on its own)",
    PROTOTYPES: "Proto-MAML's prototype classifier: the support classes' masked-average "
    "prototypes written into the classifier (w = 2c, b = -|c|²), 0 gradient steps",
}


def uses_prototypes(learner: Learner) -> bool:
    """Whether ``learner`` sets its classifier from the support's prototypes (Proto-MAML)."""
    return bool(getattr(learner, "proto_init", False))


def no_step_methods(learner: Learner) -> dict[str, Method]:
    """``unadapted`` and, for a Proto-MAML learner, ``prototypes (0 steps)``."""
    if not uses_prototypes(learner):
        return {UNADAPTED: Method(learner, 0)}
    return {
        PROTOTYPES: Method(learner, 0),
        UNADAPTED: Method(learner, 0, {"prototypes": False}),
    }
