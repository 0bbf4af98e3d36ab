"""EC2: the security groups of the one default VPC (a subset of the EC2 API).

Security groups decide who may open a connection to a cluster endpoint at all; the gateway
reads the rules at every accept, so a change applies to new connections at once while open
ones continue (security groups are stateful). Only ingress rules with CIDR sources are kept
(IPv4 ``CidrIp``, IPv6 ``CidrIpv6``); protocol ``tcp`` or ``-1``. Errors and texts follow EC2
(``InvalidGroup.NotFound``, ``InvalidPermission.Duplicate``, ``InvalidPermission.NotFound``,
``DependencyViolation``).

Authorisation: a group named by id is authorised on its ARN before it is looked up; a group
named by name is resolved silently and authorised on its ARN, or, when no group has that
name, on ``security-group/*`` — so a denied caller gets ``UnauthorizedOperation`` whether or
not the group exists (and, for a group named by name, the message names ``security-group/*``
either way: the group's id would tell that it exists). ``CreateSecurityGroup`` is authorised
on the new group and on the VPC; with ``TagSpecifications`` it also needs ``ec2:CreateTags`` on
the new group (with ``ec2:CreateAction`` = ``CreateSecurityGroup``), both seeing
``aws:RequestTag/<key>`` and ``aws:TagKeys``.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from dbkeep.api.context import CallContext, request_tag_keys, resource_tag_keys
from dbkeep.catalog.models import IngressRule, SecurityGroup
from dbkeep.catalog.rds import RdsStore
from dbkeep.errors import ApiError

DEFAULT_VPC_CIDR = "172.31.0.0/16"
# The default group admits the host itself: dbkeep's gateway listens on this host.
DEFAULT_RULES = (("-1", None, None, "127.0.0.0/8", "this host (IPv4 loopback)"), ("-1", None, None, "::1/128", "this host (IPv6 loopback)"))


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(9)[:17]


def default_vpc_id(store: RdsStore) -> str:
    vpc = store.catalog.get_meta("default_vpc_id")
    if vpc is None:
        vpc = new_id("vpc-")
        store.catalog.set_meta("default_vpc_id", vpc)
    return vpc


def ensure_default_group(store: RdsStore) -> SecurityGroup:
    vpc = default_vpc_id(store)
    group = store.security_group_by_name("default")
    if group is None:
        group = SecurityGroup(new_id("sg-"), "default", vpc, "default VPC security group")
        store.add_security_group(group)
        store.add_rules([IngressRule(new_id("sgr-"), group.group_id, p, f, t, c, d) for p, f, t, c, d in DEFAULT_RULES])
    return group


def _store(ctx: CallContext) -> RdsStore:
    return ctx.services.clusters.store


def _arn(ctx: CallContext, group_id: str) -> str:
    return f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:security-group/{group_id}"


def not_found(group: str) -> ApiError:
    return ApiError("InvalidGroup.NotFound", f"The security group '{group}' does not exist", 400)


def _group(ctx: CallContext, args: dict[str, Any], action: str) -> SecurityGroup:
    """The group ``GroupId`` or ``GroupName`` names, once ``action`` is authorised on its ARN."""
    store = _store(ctx)
    if "GroupId" in args:
        group = store.get_security_group(args["GroupId"])
        ctx.authorize(action, _arn(ctx, args["GroupId"]), resource_tag_keys(group.tags) if group else None)
        if group is None:
            raise not_found(args["GroupId"])
        return group
    if "GroupName" in args:
        group = store.security_group_by_name(args["GroupName"])
        ctx.authorize(action, _arn(ctx, group.group_id if group else "*"), resource_tag_keys(group.tags) if group else None,
                      shown=_arn(ctx, "*"))
        if group is None:
            raise ApiError("InvalidGroup.NotFound", f"The security group '{args['GroupName']}' does not exist in default VPC '{default_vpc_id(store)}'", 400)
        return group
    raise ApiError("MissingParameter", "The request must contain the parameter groupId or groupName", 400)


def _protocol(value: str) -> str:
    v = str(value).lower()
    if v in ("-1", "all"):
        return "-1"
    if v in ("tcp", "6"):
        return "tcp"
    if v in ("udp", "17", "icmp", "1", "icmpv6", "58"):
        return v
    raise ApiError("InvalidParameterValue", f"Invalid value '{value}' for IP protocol. Unknown protocol.", 400)


def _ports(protocol: str, perm: dict[str, Any]) -> tuple[int | None, int | None]:
    if protocol == "-1":
        return None, None
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    if lo is None or hi is None:
        raise ApiError("InvalidParameterValue", "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.", 400)
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535 and lo <= hi):
        raise ApiError("InvalidParameterValue", f"Invalid value for portRange. From port {lo} must be less than or equal to to port {hi}, both within 0-65535.", 400)
    return lo, hi


def _cidr(value: str, v6: bool) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ApiError("InvalidParameterValue", f"CIDR block {value} is malformed", 400) from None
    if (net.version == 6) != v6:
        raise ApiError("InvalidParameterValue", f"CIDR block {value} is malformed", 400)
    return str(net)


def _permissions(args: dict[str, Any]) -> list[dict[str, Any]]:
    perms = list(args.get("IpPermissions") or [])
    if "IpProtocol" in args or "CidrIp" in args:  # the legacy flat form
        perm: dict[str, Any] = {"IpProtocol": args.get("IpProtocol", "-1"), "FromPort": args.get("FromPort"), "ToPort": args.get("ToPort")}
        if "CidrIp" in args:
            perm["IpRanges"] = [{"CidrIp": args["CidrIp"]}]
        perms.append(perm)
    if args.get("SourceSecurityGroupName") or any(p.get("UserIdGroupPairs") or p.get("PrefixListIds") for p in perms):
        raise ApiError("InvalidParameterValue", "dbkeep supports CIDR sources only (CidrIp, CidrIpv6).", 400)
    return perms


def _rules_of(group_id: str, args: dict[str, Any]) -> list[IngressRule]:
    rules = []
    for perm in _permissions(args):
        protocol = _protocol(perm.get("IpProtocol", "-1"))
        lo, hi = _ports(protocol, perm)
        for r in perm.get("IpRanges") or []:
            rules.append(IngressRule("", group_id, protocol, lo, hi, _cidr(r["CidrIp"], False), r.get("Description")))
        for r in perm.get("Ipv6Ranges") or []:
            rules.append(IngressRule("", group_id, protocol, lo, hi, _cidr(r["CidrIpv6"], True), r.get("Description")))
    if not rules:
        raise ApiError("MissingParameter", "No IP permissions with a CIDR range were given.", 400)
    return rules


def _key(r: IngressRule) -> tuple:
    return (r.ip_protocol, r.from_port, r.to_port, r.cidr)


def _peer(r: IngressRule) -> str:
    if r.ip_protocol == "-1":
        return f'"peer: {r.cidr}, ALL, ALLOW"'
    return f'"peer: {r.cidr}, {r.ip_protocol.upper()}, from port: {r.from_port}, to port: {r.to_port}, ALLOW"'


def _rule_out(ctx: CallContext, r: IngressRule) -> dict[str, Any]:
    out: dict[str, Any] = {"SecurityGroupRuleId": r.rule_id, "GroupId": r.group_id, "GroupOwnerId": ctx.account_id, "IsEgress": False,
                           "IpProtocol": r.ip_protocol, "FromPort": -1 if r.from_port is None else r.from_port,
                           "ToPort": -1 if r.to_port is None else r.to_port,
                           "SecurityGroupRuleArn": f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:security-group-rule/{r.rule_id}"}
    out["CidrIpv6" if ":" in r.cidr else "CidrIpv4"] = r.cidr
    if r.description:
        out["Description"] = r.description
    return out


def _group_out(ctx: CallContext, g: SecurityGroup) -> dict[str, Any]:
    perms: dict[tuple, dict[str, Any]] = {}
    for r in _store(ctx).rules([g.group_id]):
        key = (r.ip_protocol, r.from_port, r.to_port)
        perm = perms.setdefault(key, {"IpProtocol": r.ip_protocol, "IpRanges": [], "Ipv6Ranges": [], "UserIdGroupPairs": [], "PrefixListIds": []})
        if r.from_port is not None:
            perm["FromPort"], perm["ToPort"] = r.from_port, r.to_port
        entry_key, list_key = ("CidrIpv6", "Ipv6Ranges") if ":" in r.cidr else ("CidrIp", "IpRanges")
        entry = {entry_key: r.cidr}
        if r.description:
            entry["Description"] = r.description
        perm[list_key].append(entry)
    return {"GroupId": g.group_id, "GroupName": g.group_name, "Description": g.description, "VpcId": g.vpc_id, "OwnerId": ctx.account_id,
            "SecurityGroupArn": _arn(ctx, g.group_id), "IpPermissions": list(perms.values()),
            "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [], "UserIdGroupPairs": [], "PrefixListIds": []}],
            "Tags": [{"Key": k, "Value": v} for k, v in g.tags]}


def _tag_specifications(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tags: list[tuple[str, str]] = []
    for spec in args.get("TagSpecifications", []):
        if spec.get("ResourceType", "security-group") != "security-group":
            raise ApiError("InvalidParameterValue", f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this operation.", 400)
        tags += [(t.get("Key", ""), t.get("Value", "")) for t in spec.get("Tags", [])]
    for key, value in tags:
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise ApiError("InvalidParameterValue", f"Tag keys must be 1 to 128 and values at most 256 characters ({key[:128]}).", 400)
        if key.lower().startswith("aws:"):
            raise ApiError("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use", 400)
    if len(tags) > 50 or len({k for k, _ in tags}) != len(tags):
        raise ApiError("InvalidParameterValue", "A resource takes at most 50 tags, each key once.", 400)
    return tuple(tags)


def create_security_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    vpc = default_vpc_id(store)
    name = args["GroupName"]
    if not 1 <= len(name) <= 255 or name.lower().startswith("sg-"):
        raise ApiError("InvalidParameterValue", f"Invalid value '{name}' for groupName. Group names may not be in the format sg-*.", 400)
    tags = _tag_specifications(args)
    group_id = new_id("sg-")
    keys = request_tag_keys(tags)
    ctx.authorize("ec2:CreateSecurityGroup", _arn(ctx, group_id), keys)
    ctx.authorize("ec2:CreateSecurityGroup", f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:vpc/{args.get('VpcId', vpc)}")
    if tags:
        ctx.authorize("ec2:CreateTags", _arn(ctx, group_id), {**keys, "ec2:CreateAction": "CreateSecurityGroup"})
    if args.get("VpcId", vpc) != vpc:
        raise ApiError("InvalidVpcID.NotFound", f"The vpc ID '{args['VpcId']}' does not exist", 400)
    if store.security_group_by_name(name):
        raise ApiError("InvalidGroup.Duplicate", f"The security group '{name}' already exists for VPC '{vpc}'", 400)
    group = SecurityGroup(group_id, name, vpc, args["Description"], tags)
    store.add_security_group(group)
    return {"GroupId": group_id, "SecurityGroupArn": _arn(ctx, group_id), "Tags": [{"Key": k, "Value": v} for k, v in tags]}


def describe_security_groups(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    groups = store.list_security_groups()
    for gid in args.get("GroupIds", []):
        ctx.authorize("ec2:DescribeSecurityGroups", _arn(ctx, gid))
    for gid in args.get("GroupIds", []):
        if store.get_security_group(gid) is None:
            raise not_found(gid)
    if args.get("GroupIds"):
        groups = [g for g in groups if g.group_id in args["GroupIds"]]
    if args.get("GroupNames"):
        by_name = {g.group_name: g for g in groups}
        for name in args["GroupNames"]:
            ctx.authorize("ec2:DescribeSecurityGroups", _arn(ctx, by_name[name].group_id if name in by_name else "*"), shown=_arn(ctx, "*"))
        missing = set(args["GroupNames"]) - {g.group_name for g in groups}
        if missing:
            raise ApiError("InvalidGroup.NotFound", f"The security group '{sorted(missing)[0]}' does not exist in default VPC '{default_vpc_id(store)}'", 400)
        groups = [g for g in groups if g.group_name in args["GroupNames"]]
    fields = {"group-id": lambda g: g.group_id, "group-name": lambda g: g.group_name, "vpc-id": lambda g: g.vpc_id, "description": lambda g: g.description}
    for f in args.get("Filters", []):
        getter = fields.get(f.get("Name"))
        if getter is None:
            raise ApiError("InvalidParameterValue", f"The filter '{f.get('Name')}' is invalid", 400)
        groups = [g for g in groups if getter(g) in set(f.get("Values", []))]
    for g in groups:
        ctx.authorize("ec2:DescribeSecurityGroups", _arn(ctx, g.group_id))
    return {"SecurityGroups": [_group_out(ctx, g) for g in groups]}


def authorize_security_group_ingress(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args, "ec2:AuthorizeSecurityGroupIngress")
    store = _store(ctx)
    existing = {_key(r) for r in store.rules([group.group_id])}
    new = []
    for r in _rules_of(group.group_id, args):
        if _key(r) in existing or _key(r) in {_key(n) for n in new}:
            raise ApiError("InvalidPermission.Duplicate", f"the specified rule {_peer(r)} already exists", 400)
        new.append(IngressRule(new_id("sgr-"), r.group_id, r.ip_protocol, r.from_port, r.to_port, r.cidr, r.description))
    store.add_rules(new)
    ctx.audit.event("ec2.ingress_authorized", verdict="allow", principal=ctx.principal.arn, group=group.group_id,
                    rules=[f"{r.ip_protocol}:{r.from_port}-{r.to_port}:{r.cidr}" for r in new], request_id=ctx.request_id)
    return {"Return": True, "SecurityGroupRules": [_rule_out(ctx, r) for r in new]}


def revoke_security_group_ingress(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args, "ec2:RevokeSecurityGroupIngress")
    store = _store(ctx)
    current = store.rules([group.group_id])
    doomed: list[IngressRule] = []
    if args.get("SecurityGroupRuleIds"):
        by_id = {r.rule_id: r for r in current}
        for rid in args["SecurityGroupRuleIds"]:
            if rid not in by_id:
                raise ApiError("InvalidSecurityGroupRuleId.NotFound", f"The security group rule ID '{rid}' does not exist", 400)
            doomed.append(by_id[rid])
    else:
        by_key = {_key(r): r for r in current}
        for r in _rules_of(group.group_id, args):
            if _key(r) not in by_key:
                raise ApiError("InvalidPermission.NotFound", "The specified rule does not exist in this security group.", 400)
            doomed.append(by_key[_key(r)])
    store.delete_rules([r.rule_id for r in doomed])
    ctx.audit.event("ec2.ingress_revoked", verdict="allow", principal=ctx.principal.arn, group=group.group_id,
                    rules=[f"{r.ip_protocol}:{r.from_port}-{r.to_port}:{r.cidr}" for r in doomed], request_id=ctx.request_id)
    return {"Return": True, "RevokedSecurityGroupRules": [_rule_out(ctx, r) for r in doomed]}


def delete_security_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args, "ec2:DeleteSecurityGroup")
    store = _store(ctx)
    if group.group_name == "default":
        raise ApiError("CannotDelete", f"the specified group: \"{group.group_id}\" name: \"default\" cannot be deleted by a user", 400)
    if any(group.group_id in c.security_group_ids for c in store.list_clusters()):
        raise ApiError("DependencyViolation", f"resource {group.group_id} has a dependent object", 400)
    store.delete_security_group(group.group_id)
    return {"Return": True, "GroupId": group.group_id}


def describe_vpcs(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    vpc = default_vpc_id(_store(ctx))
    ctx.authorize("ec2:DescribeVpcs", f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:vpc/{vpc}")
    for v in args.get("VpcIds", []):
        if v != vpc:
            raise ApiError("InvalidVpcID.NotFound", f"The vpc ID '{v}' does not exist", 400)
    return {"Vpcs": [{"VpcId": vpc, "CidrBlock": DEFAULT_VPC_CIDR, "State": "available", "IsDefault": True, "OwnerId": ctx.account_id,
                      "InstanceTenancy": "default", "DhcpOptionsId": "dopt-default",
                      "CidrBlockAssociationSet": [{"CidrBlock": DEFAULT_VPC_CIDR, "AssociationId": "vpc-cidr-assoc-default", "CidrBlockState": {"State": "associated"}}]}]}


HANDLERS = {
    "CreateSecurityGroup": create_security_group,
    "DescribeSecurityGroups": describe_security_groups,
    "AuthorizeSecurityGroupIngress": authorize_security_group_ingress,
    "RevokeSecurityGroupIngress": revoke_security_group_ingress,
    "DeleteSecurityGroup": delete_security_group,
    "DescribeVpcs": describe_vpcs,
}
