"""Pure IAM policy engine: documents (``document``), globs and variables (``match``), condition
operators (``conditions``) and evaluation (``evaluate``). Standard library only, no I/O."""

from dbkeep.policy.document import PolicyDocument, Principal, Statement, parse_policy
from dbkeep.policy.evaluate import (
    Decision,
    RequestContext,
    access_denied_message,
    evaluate,
    trust_allows,
)

__all__ = [
    "Decision",
    "PolicyDocument",
    "Principal",
    "RequestContext",
    "Statement",
    "access_denied_message",
    "evaluate",
    "parse_policy",
    "trust_allows",
]
