"""PostgreSQL role memberships as a graph (pure): who would become a member of what.

``pg_auth_members`` holds edges (group, member). A role is a member of everything reachable
upwards from it (PostgreSQL's ``pg_has_role(…, 'MEMBER')``, nested memberships included). The
guard asks one question of it: after these new edges, is any role a member of both ``rds_iam``
and ``rds_ad`` (SPEC.md: "can't also have the rds_ad role. This also applies to nested
memberships")? Only the roles below a new edge can gain memberships, so only they are looked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["RoleGraph", "IAM_ROLE", "KERBEROS_ROLE"]

IAM_ROLE = "rds_iam"
KERBEROS_ROLE = "rds_ad"


@dataclass(frozen=True)
class RoleGraph:
    edges: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (group, member)

    @classmethod
    def of(cls, edges: Iterable[tuple[str, str]]) -> RoleGraph:
        return cls(frozenset(edges))

    def _index(self, edges: Iterable[tuple[str, str]]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        up: dict[str, set[str]] = {}
        down: dict[str, set[str]] = {}
        for group, member in edges:
            up.setdefault(member, set()).add(group)
            down.setdefault(group, set()).add(member)
        return up, down

    @staticmethod
    def _reach(start: str, links: dict[str, set[str]]) -> set[str]:
        seen = {start}
        stack = [start]
        while stack:
            for nxt in links.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def both_after(self, new_edges: Iterable[tuple[str, str]]) -> str | None:
        """A role that would be a member of both rds_iam and rds_ad once ``new_edges`` exist
        (the first found, by name), else None."""
        new = list(new_edges)
        up, down = self._index(list(self.edges) + new)
        affected: set[str] = set()
        for _group, member in new:
            affected |= self._reach(member, down)
        for role in sorted(affected):
            groups = self._reach(role, up)
            if IAM_ROLE in groups and KERBEROS_ROLE in groups and role not in (IAM_ROLE, KERBEROS_ROLE):
                return role
        return None
