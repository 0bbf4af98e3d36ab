"""Catalog access for RDS clusters, instances and parameter groups, and EC2 security groups."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, delete, insert, select, update

from dbkeep.catalog import schema
from dbkeep.catalog.models import Cluster, IngressRule, Instance, ParameterGroup, SecurityGroup
from dbkeep.catalog.store import Catalog, _tags, _utc, tags_json


def _cluster(r: Any) -> Cluster:
    return Cluster(
        identifier=r.identifier,
        resource_id=r.resource_id,
        engine=r.engine,
        engine_version=r.engine_version,
        status=r.status,
        port=r.port,
        master_username=r.master_username,
        database_name=r.database_name,
        parameter_group=r.parameter_group,
        security_group_ids=tuple(json.loads(r.security_group_ids)),
        iam_auth=bool(r.iam_auth),
        deletion_protection=bool(r.deletion_protection),
        applied_parameters=json.loads(r.applied_parameters or "{}"),
        status_message=r.status_message,
        created=_utc(r.created),
        tags=_tags(r.tags),
        owner=r.owner,
    )


def _instance(r: Any) -> Instance:
    return Instance(r.identifier, r.resource_id, r.cluster_identifier, r.instance_class, r.status, bool(r.is_writer), _utc(r.created), _tags(r.tags))


class RdsStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.engine = catalog.engine

    # --- clusters ---------------------------------------------------------------------------

    def add_cluster(self, c: Cluster) -> None:
        with self.catalog.tx() as conn:
            conn.execute(
                insert(schema.clusters).values(
                    identifier=c.identifier, resource_id=c.resource_id, engine=c.engine, engine_version=c.engine_version,
                    status=c.status, port=c.port, master_username=c.master_username,
                    database_name=c.database_name, parameter_group=c.parameter_group,
                    security_group_ids=json.dumps(list(c.security_group_ids)), iam_auth=c.iam_auth,
                    deletion_protection=c.deletion_protection, applied_parameters=json.dumps(c.applied_parameters),
                    status_message=c.status_message, created=c.created, tags=tags_json(c.tags),
                    owner=c.owner,
                )
            )

    def get_cluster(self, identifier: str) -> Cluster | None:
        t = schema.clusters
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.identifier == identifier)).first()
        return _cluster(row) if row else None

    def cluster_by_resource_id(self, resource_id: str) -> Cluster | None:
        t = schema.clusters
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.resource_id == resource_id)).first()
        return _cluster(row) if row else None

    def list_clusters(self) -> list[Cluster]:
        t = schema.clusters
        with self.engine.connect() as conn:
            return [_cluster(r) for r in conn.execute(select(t).order_by(t.c.identifier))]

    def update_cluster(self, identifier: str, **fields: Any) -> None:
        if "security_group_ids" in fields:
            fields["security_group_ids"] = json.dumps(list(fields["security_group_ids"]))
        if "applied_parameters" in fields:
            fields["applied_parameters"] = json.dumps(fields["applied_parameters"])
        if "tags" in fields:
            fields["tags"] = tags_json(fields["tags"])
        with self.catalog.tx() as conn:
            conn.execute(update(schema.clusters).where(schema.clusters.c.identifier == identifier).values(**fields))

    def delete_cluster(self, identifier: str) -> None:
        with self.catalog.tx() as conn:
            conn.execute(delete(schema.instances).where(schema.instances.c.cluster_identifier == identifier))
            conn.execute(delete(schema.clusters).where(schema.clusters.c.identifier == identifier))

    def used_ports(self) -> set[int]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(schema.clusters.c.port))}

    # --- instances --------------------------------------------------------------------------

    def add_instance(self, i: Instance) -> None:
        with self.catalog.tx() as conn:
            conn.execute(
                insert(schema.instances).values(
                    identifier=i.identifier, resource_id=i.resource_id, cluster_identifier=i.cluster_identifier,
                    instance_class=i.instance_class, status=i.status, is_writer=i.is_writer, created=i.created,
                    tags=tags_json(i.tags),
                )
            )

    def get_instance(self, identifier: str) -> Instance | None:
        t = schema.instances
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.identifier == identifier)).first()
        return _instance(row) if row else None

    def list_instances(self, cluster: str | None = None) -> list[Instance]:
        t = schema.instances
        q = select(t).order_by(t.c.created, t.c.identifier)
        if cluster is not None:
            q = q.where(t.c.cluster_identifier == cluster)
        with self.engine.connect() as conn:
            return [_instance(r) for r in conn.execute(q)]

    def update_instance(self, identifier: str, **fields: Any) -> None:
        if "tags" in fields:
            fields["tags"] = tags_json(fields["tags"])
        with self.catalog.tx() as conn:
            conn.execute(update(schema.instances).where(schema.instances.c.identifier == identifier).values(**fields))

    def set_instances_status(self, cluster: str, status: str) -> None:
        with self.catalog.tx() as conn:
            conn.execute(update(schema.instances).where(schema.instances.c.cluster_identifier == cluster).values(status=status))

    def delete_instance(self, identifier: str) -> None:
        with self.catalog.tx() as conn:
            conn.execute(delete(schema.instances).where(schema.instances.c.identifier == identifier))

    # --- parameter groups -------------------------------------------------------------------

    def add_parameter_group(self, g: ParameterGroup) -> None:
        with self.catalog.tx() as conn:
            conn.execute(insert(schema.parameter_groups).values(name=g.name, family=g.family, description=g.description, is_default=g.is_default, tags=tags_json(g.tags)))

    def get_parameter_group(self, name: str) -> ParameterGroup | None:
        t = schema.parameter_groups
        with self.engine.connect() as conn:
            r = conn.execute(select(t).where(t.c.name == name)).first()
        return ParameterGroup(r.name, r.family, r.description, bool(r.is_default), _tags(r.tags)) if r else None

    def list_parameter_groups(self) -> list[ParameterGroup]:
        t = schema.parameter_groups
        with self.engine.connect() as conn:
            return [ParameterGroup(r.name, r.family, r.description, bool(r.is_default), _tags(r.tags)) for r in conn.execute(select(t).order_by(t.c.name))]

    def set_parameter_group_tags(self, name: str, tags: tuple[tuple[str, str], ...]) -> None:
        with self.catalog.tx() as conn:
            conn.execute(update(schema.parameter_groups).where(schema.parameter_groups.c.name == name).values(tags=tags_json(tags)))

    def delete_parameter_group(self, name: str) -> None:
        with self.catalog.tx() as conn:
            conn.execute(delete(schema.parameter_values).where(schema.parameter_values.c.group_name == name))
            conn.execute(delete(schema.parameter_groups).where(schema.parameter_groups.c.name == name))

    def parameter_values(self, group: str) -> dict[str, str]:
        t = schema.parameter_values
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(t).where(t.c.group_name == group))}

    def set_parameter_values(self, group: str, values: dict[str, tuple[str, str]]) -> None:
        """``values``: name → (value, apply_method); all in one transaction."""
        t = schema.parameter_values
        with self.catalog.tx() as conn:
            for name, (value, method) in values.items():
                key = and_(t.c.group_name == group, t.c.name == name)
                if conn.execute(update(t).where(key).values(value=value, apply_method=method)).rowcount == 0:
                    conn.execute(insert(t).values(group_name=group, name=name, value=value, apply_method=method))

    def reset_parameter_values(self, group: str, names: list[str] | None) -> None:
        t = schema.parameter_values
        cond = t.c.group_name == group
        if names is not None:
            cond = and_(cond, t.c.name.in_(names))
        with self.catalog.tx() as conn:
            conn.execute(delete(t).where(cond))

    def clusters_using_group(self, group: str) -> list[Cluster]:
        return [c for c in self.list_clusters() if c.parameter_group == group]

    # --- security groups --------------------------------------------------------------------

    def add_security_group(self, g: SecurityGroup) -> None:
        with self.catalog.tx() as conn:
            conn.execute(insert(schema.security_groups).values(group_id=g.group_id, group_name=g.group_name, vpc_id=g.vpc_id, description=g.description, tags=tags_json(g.tags)))

    def _sg(self, r: Any) -> SecurityGroup:
        return SecurityGroup(r.group_id, r.group_name, r.vpc_id, r.description, _tags(r.tags))

    def get_security_group(self, group_id: str) -> SecurityGroup | None:
        t = schema.security_groups
        with self.engine.connect() as conn:
            r = conn.execute(select(t).where(t.c.group_id == group_id)).first()
        return self._sg(r) if r else None

    def security_group_by_name(self, name: str) -> SecurityGroup | None:
        t = schema.security_groups
        with self.engine.connect() as conn:
            r = conn.execute(select(t).where(t.c.group_name == name)).first()
        return self._sg(r) if r else None

    def list_security_groups(self) -> list[SecurityGroup]:
        t = schema.security_groups
        with self.engine.connect() as conn:
            return [self._sg(r) for r in conn.execute(select(t).order_by(t.c.group_name))]

    def delete_security_group(self, group_id: str) -> None:
        with self.catalog.tx() as conn:
            conn.execute(delete(schema.security_group_rules).where(schema.security_group_rules.c.group_id == group_id))
            conn.execute(delete(schema.security_groups).where(schema.security_groups.c.group_id == group_id))

    def rules(self, group_ids: list[str] | tuple[str, ...]) -> list[IngressRule]:
        t = schema.security_group_rules
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.group_id.in_(list(group_ids))).order_by(t.c.rule_id)).all()
        return [IngressRule(r.rule_id, r.group_id, r.ip_protocol, r.from_port, r.to_port, r.cidr, r.description) for r in rows]

    def add_rules(self, rules: list[IngressRule]) -> None:
        with self.catalog.tx() as conn:
            for r in rules:
                conn.execute(insert(schema.security_group_rules).values(
                    rule_id=r.rule_id, group_id=r.group_id, ip_protocol=r.ip_protocol, from_port=r.from_port,
                    to_port=r.to_port, cidr=r.cidr, description=r.description))

    def delete_rules(self, rule_ids: list[str]) -> None:
        with self.catalog.tx() as conn:
            conn.execute(delete(schema.security_group_rules).where(schema.security_group_rules.c.rule_id.in_(rule_ids)))
