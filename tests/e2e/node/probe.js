// A login, a query and a prepared statement with node's mysql2 or pg, for the client matrix of
// tests/e2e/test_clients_node.py. Usage: node probe.js JSON
//   JSON: {"driver": "mysql2"|"pg", "host", "port", "user", "password", "database", "ca" (a file;
//          null: node's own trust store), "query", "prepared", "params"}
// Prints one JSON object: {"tls": protocol or null, "query": rows, "prepared": rows} or {"error": {...}}.
"use strict";
const fs = require("fs");

const args = JSON.parse(process.argv[2]);
// TLS verified as libpq's verify-full and MySQL's VERIFY_IDENTITY: the chain against the CA
// and the certificate's names against the host name (node's checkServerIdentity)
const ssl = { rejectUnauthorized: true, ...(args.ca ? { ca: fs.readFileSync(args.ca) } : {}) };

function errorOf(e) {
  return { code: e.code ?? null, errno: e.errno ?? null, sqlState: e.sqlState ?? null, message: e.message };
}

async function withMysql2() {
  const mysql = require("mysql2/promise");
  const conn = await mysql.createConnection({ host: args.host, port: args.port, user: args.user,
    password: args.password, database: args.database, ssl, connectTimeout: 20000 });
  try {
    const tls = conn.connection.stream.getProtocol ? conn.connection.stream.getProtocol() : null;
    const [rows] = await conn.query(args.query);
    const [prepared] = await conn.execute(args.prepared, args.params);  // COM_STMT_PREPARE + EXECUTE
    return { tls, query: rows.map(Object.values), prepared: prepared.map(Object.values) };
  } finally {
    await conn.end();
  }
}

async function withPg() {
  const { Client } = require("pg");
  const client = new Client({ host: args.host, port: args.port, user: args.user, password: args.password,
    database: args.database, ssl, connectionTimeoutMillis: 20000 });
  await client.connect();
  try {
    const tls = client.connection.stream.getProtocol ? client.connection.stream.getProtocol() : null;
    const rows = await client.query({ text: args.query, rowMode: "array" });
    // a named statement: Parse once, then Bind/Execute
    const prepared = await client.query({ name: "probe", text: args.prepared, values: args.params, rowMode: "array" });
    const again = await client.query({ name: "probe", text: args.prepared, values: args.params, rowMode: "array" });
    return { tls, query: rows.rows, prepared: prepared.rows.concat(again.rows) };
  } finally {
    await client.end();
  }
}

(args.driver === "pg" ? withPg() : withMysql2()).then(
  (result) => { console.log(JSON.stringify(result)); },
  (e) => { console.log(JSON.stringify({ error: errorOf(e) })); process.exitCode = 1; });
