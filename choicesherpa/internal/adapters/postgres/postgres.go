// Package postgres holds the Choice Sherpa repositories on PostgreSQL and
// the app's migrations (choicesherpa/migrations).
//
// Guarantees: the repositories write in the transaction of the unit of work
// or idempotent handler running under ctx (eventkit's
// adapters/postgres.TxFromContext), so aggregate rows and outbox rows commit
// together; outside one they use the pool directly. Inside a transaction,
// Get locks the aggregate row (SELECT ... FOR NO KEY UPDATE), so concurrent commands
// on one aggregate serialise instead of losing updates; the lock order is
// always cycle, then session, then conversation. Outputs are stored as json
// (byte for byte); timestamps come back in UTC.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	ekpg "github.com/choicesherpa/eventkit/adapters/postgres"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/app"
	"github.com/choicesherpa/eventkit/choicesherpa/internal/domain"
	"github.com/choicesherpa/eventkit/choicesherpa/migrations"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// VersionTable records the applied app migrations.
const VersionTable = "choicesherpa_migrations"

const migrateLock = 0x63736d67 // "csmg"

// Migrate applies eventkit's migrations (outbox, processed events) and the
// app's, in the pool's search_path, under an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := ekpg.Migrate(ctx, pool, nil); err != nil {
		return err
	}
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("choicesherpa: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, migrateLock); err != nil {
		return fmt.Errorf("choicesherpa: migrate lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+VersionTable+` (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("choicesherpa: migrate: %w", err)
	}
	for _, n := range names {
		v, err := strconv.Atoi(strings.SplitN(n, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("choicesherpa: migration %q has no version: %w", n, err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO `+VersionTable+` (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, v, n)
		if err != nil {
			return fmt.Errorf("choicesherpa: migrate: %w", err)
		}
		if tag.RowsAffected() == 0 {
			continue
		}
		sql, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("choicesherpa: migration %s: %w", n, err)
		}
	}
	return tx.Commit(ctx)
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Store gives the repositories over a pool.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns the repositories' store; pool must be migrated (Migrate).
func NewStore(pool *pgxpool.Pool) (*Store, error) {
	if pool == nil {
		return nil, errors.New("choicesherpa postgres: nil pool")
	}
	return &Store{pool: pool}, nil
}

// Repositories returns the three repositories.
func (s *Store) Repositories() app.Repositories {
	return app.Repositories{Sessions: sessionRepo{s}, Cycles: cycleRepo{s}, Conversations: convRepo{s}}
}

func (s *Store) q(ctx context.Context) (querier, bool) {
	if tx, ok := ekpg.TxFromContext(ctx); ok {
		return tx, true
	}
	return s.pool, false
}

func lockClause(inTx bool) string {
	if inTx {
		// NO KEY UPDATE: serialises writers of the row without blocking the
		// foreign-key checks (FOR KEY SHARE) of inserts that reference it,
		// which would otherwise deadlock against a concurrent insert.
		return " FOR NO KEY UPDATE"
	}
	return ""
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func utc(t time.Time) time.Time { return t.UTC() }

// --- sessions ---

type sessionRepo struct{ s *Store }

var _ app.SessionRepository = sessionRepo{}

const sessionCols = `id, user_id, title, description, status, cycle_ids, created_at, updated_at`

func scanSession(row pgx.Row) (*domain.Session, error) {
	var x domain.Session
	var status string
	if err := row.Scan(&x.ID, &x.UserID, &x.Title, &x.Description, &status, &x.CycleIDs, &x.CreatedAt, &x.UpdatedAt); err != nil {
		return nil, err
	}
	x.Status = domain.SessionStatus(status)
	x.CreatedAt, x.UpdatedAt = utc(x.CreatedAt), utc(x.UpdatedAt)
	if x.CycleIDs == nil {
		x.CycleIDs = []uuid.UUID{}
	}
	return &x, nil
}

func (r sessionRepo) Create(ctx context.Context, x *domain.Session) error {
	q, _ := r.s.q(ctx)
	_, err := q.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
		x.ID, x.UserID, x.Title, x.Description, string(x.Status), x.CycleIDs, x.CreatedAt, x.UpdatedAt)
	if isUniqueViolation(err) {
		return domain.Conflictf("duplicate", "session %s exists", x.ID)
	}
	return wrap(err, "create session")
}

func (r sessionRepo) Update(ctx context.Context, x *domain.Session) error {
	q, _ := r.s.q(ctx)
	tag, err := q.Exec(ctx, `UPDATE sessions SET title=$2, description=$3, status=$4, cycle_ids=$5, updated_at=$6 WHERE id=$1`,
		x.ID, x.Title, x.Description, string(x.Status), x.CycleIDs, x.UpdatedAt)
	if err != nil {
		return wrap(err, "update session")
	}
	if tag.RowsAffected() == 0 {
		return domain.NotFoundf("session_not_found", "session %s not found", x.ID)
	}
	return nil
}

func (r sessionRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Session, error) {
	q, inTx := r.s.q(ctx)
	x, err := scanSession(q.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id=$1`+lockClause(inTx), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.NotFoundf("session_not_found", "session %s not found", id)
	}
	return x, wrap(err, "get session")
}

func (r sessionRepo) ListByUser(ctx context.Context, userID string) ([]*domain.Session, error) {
	q, _ := r.s.q(ctx)
	rows, err := q.Query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE user_id=$1 ORDER BY created_at, id::text`, userID)
	if err != nil {
		return nil, wrap(err, "list sessions")
	}
	defer rows.Close()
	var out []*domain.Session
	for rows.Next() {
		x, err := scanSession(rows)
		if err != nil {
			return nil, wrap(err, "list sessions")
		}
		out = append(out, x)
	}
	return out, wrap(rows.Err(), "list sessions")
}

// --- cycles ---

type cycleRepo struct{ s *Store }

var _ app.CycleRepository = cycleRepo{}

const cycleCols = `id, session_id, parent_cycle_id, branch_point, branch_label, status, current_step, created_at, updated_at`

func scanCycle(row pgx.Row) (*domain.Cycle, error) {
	var x domain.Cycle
	var bp *string
	var status, step string
	if err := row.Scan(&x.ID, &x.SessionID, &x.ParentCycleID, &bp, &x.BranchLabel, &status, &step, &x.CreatedAt, &x.UpdatedAt); err != nil {
		return nil, err
	}
	if bp != nil {
		t := domain.ComponentType(*bp)
		x.BranchPoint = &t
	}
	x.Status, x.CurrentStep = domain.CycleStatus(status), domain.ComponentType(step)
	x.CreatedAt, x.UpdatedAt = utc(x.CreatedAt), utc(x.UpdatedAt)
	return &x, nil
}

func (r cycleRepo) Create(ctx context.Context, x *domain.Cycle) error {
	q, _ := r.s.q(ctx)
	var bp *string
	if x.BranchPoint != nil {
		s := string(*x.BranchPoint)
		bp = &s
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO cycles (`+cycleCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		x.ID, x.SessionID, x.ParentCycleID, bp, x.BranchLabel, string(x.Status), string(x.CurrentStep), x.CreatedAt, x.UpdatedAt)
	for i, c := range x.Components {
		b.Queue(`INSERT INTO components (id, cycle_id, position, component_type, status, output, revision_reason, created_at, updated_at)
VALUES ($1,$2,$3,$4,$5,$6::json,$7,$8,$9)`, c.ID, x.ID, i, string(c.Type), string(c.Status), outputArg(c.Output), c.RevisionReason, c.CreatedAt, c.UpdatedAt)
	}
	err := q.SendBatch(ctx, b).Close()
	if isUniqueViolation(err) {
		return domain.Conflictf("duplicate", "cycle %s exists", x.ID)
	}
	return wrap(err, "create cycle")
}

func outputArg(o json.RawMessage) any {
	if len(o) == 0 {
		return nil
	}
	return string(o)
}

func (r cycleRepo) Update(ctx context.Context, x *domain.Cycle) error {
	q, _ := r.s.q(ctx)
	tag, err := q.Exec(ctx, `UPDATE cycles SET status=$2, current_step=$3, branch_label=$4, updated_at=$5 WHERE id=$1`,
		x.ID, string(x.Status), string(x.CurrentStep), x.BranchLabel, x.UpdatedAt)
	if err != nil {
		return wrap(err, "update cycle")
	}
	if tag.RowsAffected() == 0 {
		return domain.NotFoundf("cycle_not_found", "cycle %s not found", x.ID)
	}
	b := &pgx.Batch{}
	for _, c := range x.Components {
		b.Queue(`UPDATE components SET status=$2, output=$3::json, revision_reason=$4, updated_at=$5 WHERE id=$1`,
			c.ID, string(c.Status), outputArg(c.Output), c.RevisionReason, c.UpdatedAt)
	}
	return wrap(q.SendBatch(ctx, b).Close(), "update components")
}

func (r cycleRepo) loadComponents(ctx context.Context, q querier, cycles ...*domain.Cycle) error {
	if len(cycles) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(cycles))
	byID := map[uuid.UUID]*domain.Cycle{}
	for i, c := range cycles {
		ids[i], byID[c.ID] = c.ID, c
		c.Components = make([]domain.Component, 0, len(domain.ComponentOrder))
	}
	rows, err := q.Query(ctx, `SELECT cycle_id, id, component_type, status, output::text, revision_reason, created_at, updated_at
FROM components WHERE cycle_id = ANY($1) ORDER BY cycle_id, position`, ids)
	if err != nil {
		return wrap(err, "load components")
	}
	defer rows.Close()
	for rows.Next() {
		var cid uuid.UUID
		var c domain.Component
		var typ, status string
		var out *string
		if err := rows.Scan(&cid, &c.ID, &typ, &status, &out, &c.RevisionReason, &c.CreatedAt, &c.UpdatedAt); err != nil {
			return wrap(err, "load components")
		}
		c.Type, c.Status = domain.ComponentType(typ), domain.ComponentStatus(status)
		c.CreatedAt, c.UpdatedAt = utc(c.CreatedAt), utc(c.UpdatedAt)
		if out != nil {
			c.Output = json.RawMessage(*out)
		}
		byID[cid].Components = append(byID[cid].Components, c)
	}
	return wrap(rows.Err(), "load components")
}

func (r cycleRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Cycle, error) {
	q, inTx := r.s.q(ctx)
	x, err := scanCycle(q.QueryRow(ctx, `SELECT `+cycleCols+` FROM cycles WHERE id=$1`+lockClause(inTx), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.NotFoundf("cycle_not_found", "cycle %s not found", id)
	}
	if err != nil {
		return nil, wrap(err, "get cycle")
	}
	return x, r.loadComponents(ctx, q, x)
}

func (r cycleRepo) ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Cycle, error) {
	q, _ := r.s.q(ctx)
	rows, err := q.Query(ctx, `SELECT `+cycleCols+` FROM cycles WHERE session_id=$1 ORDER BY created_at, id::text`, sessionID)
	if err != nil {
		return nil, wrap(err, "list cycles")
	}
	var out []*domain.Cycle
	for rows.Next() {
		x, err := scanCycle(rows)
		if err != nil {
			rows.Close()
			return nil, wrap(err, "list cycles")
		}
		out = append(out, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(err, "list cycles")
	}
	return out, r.loadComponents(ctx, q, out...)
}

// --- conversations ---

type convRepo struct{ s *Store }

var _ app.ConversationRepository = convRepo{}

const convCols = `id, component_id, cycle_id, session_id, component_type, state, phase, system_prompt, created_at, updated_at`

func scanConv(row pgx.Row) (*domain.Conversation, error) {
	var x domain.Conversation
	var typ, state, phase string
	if err := row.Scan(&x.ID, &x.ComponentID, &x.CycleID, &x.SessionID, &typ, &state, &phase, &x.SystemPrompt, &x.CreatedAt, &x.UpdatedAt); err != nil {
		return nil, err
	}
	x.ComponentType, x.State, x.Phase = domain.ComponentType(typ), domain.ConversationState(state), domain.AgentPhase(phase)
	x.CreatedAt, x.UpdatedAt = utc(x.CreatedAt), utc(x.UpdatedAt)
	x.Messages = []domain.Message{}
	return &x, nil
}

func insertMessages(b *pgx.Batch, x *domain.Conversation) {
	for i, m := range x.Messages {
		b.Queue(`INSERT INTO messages (id, conversation_id, seq, role, content, created_at) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (id) DO NOTHING`,
			m.ID, x.ID, i, string(m.Role), m.Content, m.CreatedAt)
	}
}

func (r convRepo) Create(ctx context.Context, x *domain.Conversation) error {
	q, _ := r.s.q(ctx)
	tag, err := q.Exec(ctx, `INSERT INTO conversations (`+convCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING`,
		x.ID, x.ComponentID, x.CycleID, x.SessionID, string(x.ComponentType), string(x.State), string(x.Phase), x.SystemPrompt, x.CreatedAt, x.UpdatedAt)
	if err != nil {
		return wrap(err, "create conversation")
	}
	if tag.RowsAffected() == 0 {
		return domain.Conflictf("duplicate", "component %s already has a conversation", x.ComponentID)
	}
	b := &pgx.Batch{}
	insertMessages(b, x)
	return wrap(q.SendBatch(ctx, b).Close(), "create conversation messages")
}

func (r convRepo) Update(ctx context.Context, x *domain.Conversation) error {
	q, _ := r.s.q(ctx)
	tag, err := q.Exec(ctx, `UPDATE conversations SET state=$2, phase=$3, updated_at=$4 WHERE id=$1`, x.ID, string(x.State), string(x.Phase), x.UpdatedAt)
	if err != nil {
		return wrap(err, "update conversation")
	}
	if tag.RowsAffected() == 0 {
		return domain.NotFoundf("conversation_not_found", "conversation %s not found", x.ID)
	}
	b := &pgx.Batch{}
	insertMessages(b, x)
	return wrap(q.SendBatch(ctx, b).Close(), "update conversation messages")
}

func (r convRepo) loadMessages(ctx context.Context, q querier, convs ...*domain.Conversation) error {
	if len(convs) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(convs))
	byID := map[uuid.UUID]*domain.Conversation{}
	for i, c := range convs {
		ids[i], byID[c.ID] = c.ID, c
	}
	rows, err := q.Query(ctx, `SELECT conversation_id, id, role, content, created_at FROM messages WHERE conversation_id = ANY($1) ORDER BY conversation_id, seq`, ids)
	if err != nil {
		return wrap(err, "load messages")
	}
	defer rows.Close()
	for rows.Next() {
		var cid uuid.UUID
		var m domain.Message
		var role string
		if err := rows.Scan(&cid, &m.ID, &role, &m.Content, &m.CreatedAt); err != nil {
			return wrap(err, "load messages")
		}
		m.Role, m.CreatedAt = domain.Role(role), utc(m.CreatedAt)
		byID[cid].Messages = append(byID[cid].Messages, m)
	}
	return wrap(rows.Err(), "load messages")
}

func (r convRepo) getWhere(ctx context.Context, where string, arg any, what string) (*domain.Conversation, error) {
	q, inTx := r.s.q(ctx)
	x, err := scanConv(q.QueryRow(ctx, `SELECT `+convCols+` FROM conversations WHERE `+where+lockClause(inTx), arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.NotFoundf("conversation_not_found", "%s has no conversation", what)
	}
	if err != nil {
		return nil, wrap(err, "get conversation")
	}
	return x, r.loadMessages(ctx, q, x)
}

func (r convRepo) Get(ctx context.Context, id uuid.UUID) (*domain.Conversation, error) {
	return r.getWhere(ctx, "id=$1", id, "conversation "+id.String())
}

func (r convRepo) GetByComponent(ctx context.Context, componentID uuid.UUID) (*domain.Conversation, error) {
	return r.getWhere(ctx, "component_id=$1", componentID, "component "+componentID.String())
}

func (r convRepo) ListBySession(ctx context.Context, sessionID uuid.UUID) ([]*domain.Conversation, error) {
	q, _ := r.s.q(ctx)
	rows, err := q.Query(ctx, `SELECT `+convCols+` FROM conversations WHERE session_id=$1 ORDER BY created_at, id::text`, sessionID)
	if err != nil {
		return nil, wrap(err, "list conversations")
	}
	var out []*domain.Conversation
	for rows.Next() {
		x, err := scanConv(rows)
		if err != nil {
			rows.Close()
			return nil, wrap(err, "list conversations")
		}
		out = append(out, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(err, "list conversations")
	}
	return out, r.loadMessages(ctx, q, out...)
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("choicesherpa postgres: %s: %w", what, err)
}
