// A version of what a session list shows (migrations/021_list_version.sql):
// a counter that every write to a table the list reads moves, in the same
// transaction, whichever connection writes. Reading it is one row by key,
// not the list: equal versions, equal rows (read by listedRows.ts
// ListChanges, with the sessions each write touched: migration 023).

/** The tables a session list reads, each with a trigger per write that moves the version (checked by test/unit/listVersion.test.ts). */
export const LISTED_TABLES = ['sessions', 'ip_leases', 'published_ports', 'session_secrets', 'session_volumes', 'volumes'] as const;
