// Package migrations embeds the Choice Sherpa tables (NNN_name.up.sql /
// .down.sql). The eventkit outbox and processed-events tables come from the
// library's own migrations (adapters/postgres.Migrate).
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
