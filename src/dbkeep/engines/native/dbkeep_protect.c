/* dbkeep_protect: the PostgreSQL engine's own refusal of changes to the roles dbkeep owns.
 *
 * The gateway's statement guard (guard/pg_rules.py) reads every statement a privileged session
 * sends, but not the SQL that code runs inside the engine: EXECUTE in a DO block, a function, a
 * procedure, a trigger fired by any session's INSERT. For that code the gateway checks the roles
 * after the fact and restores them (the "last line"). This module, loaded by every dbkeep
 * PostgreSQL cluster through shared_preload_libraries, makes the engine refuse such changes
 * itself, wherever the statement comes from: a ProcessUtility hook that, unless the current user
 * is a superuser (rdsadmin; the master is not one), refuses with SQLSTATE 42501
 *   - ALTER ROLE (attributes, password, VALID UNTIL, SET/RESET, RENAME) and DROP ROLE of rdsadmin
 *     or an rds_* role dbkeep owns;
 *   - a change of those roles' own memberships (GRANT x TO rds_superuser, REVOKE x FROM rdsadmin,
 *     ALTER GROUP g ADD USER rdsadmin, CREATE ROLE r ROLE rds_iam ...); granting them to other
 *     roles stays allowed, as on RDS;
 *   - COMMENT ON ROLE, SECURITY LABEL ON ROLE, REASSIGN OWNED / DROP OWNED BY, and ALTER DEFAULT
 *     PRIVILEGES FOR ROLE naming one of them.
 * The texts are the gateway's: `permission denied to alter role "rds_iam"`. ALTER, DROP and
 * RENAME of rdsadmin itself, a superuser, are left to the engine, which refuses them to
 * non-superusers with its own texts.
 *
 * Built at install against Debian's postgresql-server-dev (setup.py) and copied into each
 * cluster's conf/ (read-only to the confined engine), engines/postgres.py. */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static ProcessUtility_hook_type previous_hook = NULL;

static const char *const protected_roles[] = {
    "rdsadmin", "rds_superuser", "rds_password", "rds_iam", "rds_ad", "rds_replication", NULL,
};

static bool protected_name(const char *name)
{
    if (name == NULL)
        return false;
    for (const char *const *p = protected_roles; *p != NULL; p++)
        if (strcmp(*p, name) == 0)
            return true;
    return false;
}

/* The role a RoleSpec names (CURRENT_USER and friends resolved), or NULL (PUBLIC). */
static const char *spec_name(const RoleSpec *spec)
{
    if (spec == NULL)
        return NULL;
    switch (spec->roletype) {
    case ROLESPEC_CSTRING:
        return spec->rolename;
    case ROLESPEC_CURRENT_ROLE:
    case ROLESPEC_CURRENT_USER:
        return GetUserNameFromId(GetUserId(), true);
    case ROLESPEC_SESSION_USER:
        return GetUserNameFromId(GetSessionUserId(), true);
    default:
        return NULL;
    }
}

pg_attribute_noreturn() static void refuse(const char *action, const char *role)
{
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied to %s role \"%s\"", action, role),
                    errdetail("The role is managed by dbkeep.")));
}

static void check_spec(const RoleSpec *spec, const char *action)
{
    const char *name = spec_name(spec);
    if (protected_name(name))
        refuse(action, name);
}

/* ALTER, DROP or RENAME of the role itself: a superuser (rdsadmin) is left to the engine, which
 * refuses those to non-superusers with its own texts ("must be superuser to alter superuser
 * roles or change superuser attribute", SPEC.md); the rds_* roles are ordinary roles. */
static void check_target(const char *name, const char *action)
{
    if (!protected_name(name))
        return;
    Oid role = get_role_oid(name, true);
    if (OidIsValid(role) && superuser_arg(role))
        return;
    refuse(action, name);
}

static void check_target_spec(const RoleSpec *spec, const char *action)
{
    check_target(spec_name(spec), action);
}


static void each_spec(List *specs, void (*check)(const RoleSpec *, const char *), const char *action)
{
    ListCell *cell;
    foreach (cell, specs) {
        Node *node = lfirst(cell);
        if (node != NULL && IsA(node, RoleSpec))
            check((RoleSpec *)node, action);
    }
}

static void check_specs(List *specs, const char *action)
{
    each_spec(specs, check_spec, action);
}

/* CREATE ROLE / ALTER ROLE options that make the named roles members of another:
 * "rolemembers" (ROLE x, ALTER GROUP ... ADD/DROP USER x) and "adminmembers" (ADMIN x). */
static void check_member_options(List *options)
{
    ListCell *cell;
    foreach (cell, options) {
        DefElem *option = lfirst(cell);
        if (strcmp(option->defname, "rolemembers") == 0 || strcmp(option->defname, "adminmembers") == 0)
            check_specs((List *)option->arg, "alter");
    }
}

static void check_statement(Node *stmt)
{
    if (stmt == NULL || superuser())
        return;
    switch (nodeTag(stmt)) {
    case T_AlterRoleStmt: {
        AlterRoleStmt *s = (AlterRoleStmt *)stmt;
        check_member_options(s->options);
        /* ALTER GROUP g ADD/DROP USER x (the grammar's only "rolemembers" option here) changes
         * x's memberships, checked above; granting g, even a protected one, stays allowed */
        if (!(s->options != NIL && strcmp(linitial_node(DefElem, s->options)->defname, "rolemembers") == 0))
            check_target_spec(s->role, "alter");
        break;
    }
    case T_AlterRoleSetStmt:
        check_target_spec(((AlterRoleSetStmt *)stmt)->role, "alter");
        break;
    case T_DropRoleStmt:
        each_spec(((DropRoleStmt *)stmt)->roles, check_target_spec, "drop");
        break;
    case T_RenameStmt: {
        RenameStmt *s = (RenameStmt *)stmt;
        if (s->renameType == OBJECT_ROLE)
            check_target(s->subname, "rename");
        break;
    }
    case T_GrantRoleStmt:
        /* the grantees' memberships change; granting a protected role to others is allowed */
        check_specs(((GrantRoleStmt *)stmt)->grantee_roles, "alter");
        break;
    case T_CreateRoleStmt:
        check_member_options(((CreateRoleStmt *)stmt)->options);
        break;
    case T_CommentStmt: {
        CommentStmt *s = (CommentStmt *)stmt;
        if (s->objtype == OBJECT_ROLE && s->object != NULL && IsA(s->object, String) && protected_name(strVal(s->object)))
            refuse("alter", strVal(s->object));
        break;
    }
    case T_SecLabelStmt: {
        SecLabelStmt *s = (SecLabelStmt *)stmt;
        if (s->objtype == OBJECT_ROLE && s->object != NULL && IsA(s->object, String) && protected_name(strVal(s->object)))
            refuse("alter", strVal(s->object));
        break;
    }
    case T_ReassignOwnedStmt: {
        ReassignOwnedStmt *s = (ReassignOwnedStmt *)stmt;
        check_specs(s->roles, "alter");
        check_spec(s->newrole, "alter");
        break;
    }
    case T_DropOwnedStmt:
        check_specs(((DropOwnedStmt *)stmt)->roles, "alter");
        break;
    case T_AlterDefaultPrivilegesStmt: {
        ListCell *cell;
        foreach (cell, ((AlterDefaultPrivilegesStmt *)stmt)->options) {
            DefElem *option = lfirst(cell);
            if (strcmp(option->defname, "roles") == 0)
                check_specs((List *)option->arg, "alter");
        }
        break;
    }
    default:
        break;
    }
}

static void dbkeep_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
                                   ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
                                   DestReceiver *dest, QueryCompletion *qc)
{
    check_statement(pstmt->utilityStmt);
    if (previous_hook != NULL)
        previous_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
    else
        standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void _PG_init(void)
{
    previous_hook = ProcessUtility_hook;
    ProcessUtility_hook = dbkeep_process_utility;
}
