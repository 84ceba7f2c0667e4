package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/outbox"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// The claim's order check, in the race it exists for: while relay 1's claim
// scan runs, another relay's publish of cart A's first row A1 fails and it
// commits A1 as backing off; relay 1 then gets A's lock and reaches A2.
// Without the check (a fresh snapshot taken once the claim holds its
// locks), relay 1 would hand out A2 while A1 waits to be retried. A long
// stretch of rows locked by another transaction keeps the scan busy (SKIP
// LOCKED passes them one by one without flagging anything), so the
// failure really lands mid-scan:
//
//   - held: A1, the stretch, A2. Relay 2 holds A1 when relay 1's scan
//     reaches it, so relay 1 fails to take A's lock and flags the pass.
//   - recheck: the stretch, A1, A2. Relay 2's failure commits before relay
//     1's scan reaches A1; A's lock is free by then, and relay 1 sees the
//     failure only when it locks the row (PostgreSQL re-checks the newer
//     version, which is not due), and flags the pass there.
//   - held, then a row backing off: as held, with another aggregate's row
//     backing off between A1 and the stretch, so the scan passes two rows
//     over; the check must look from the lowest of them.
func TestClaimDoesNotOvertakeARowFailedMeanwhile(t *testing.T) {
	t.Parallel()
	t.Run("held", func(t *testing.T) { claimRace(t, false, false) })
	t.Run("recheck", func(t *testing.T) { claimRace(t, true, false) })
	t.Run("held, then a row backing off", func(t *testing.T) { claimRace(t, false, true) })
}

func claimRace(t *testing.T, stretchFirst, backingOff bool) {
	b := setup(t)
	ctx := context.Background()
	stretch := func() {
		t.Helper()
		_, err := b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at)
SELECT gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'pad', '{}', now() FROM generate_series(1, $1)`, 200_000) // about 0.2 s of scanning
		require.NoError(t, err)
	}
	if stretchFirst {
		stretch()
	}
	b.write(t, newEnv("A", 1))
	if backingOff {
		b.write(t, newEnv("B", 1))
		_, err := b.pool.Exec(ctx, `UPDATE `+b.ob.Table()+` SET attempts = 1, next_attempt_at = now() + interval '1 hour' WHERE aggregate_id = 'B'`)
		require.NoError(t, err)
	}
	if !stretchFirst {
		stretch()
	}
	b.write(t, newEnv("A", 2))
	_, err := b.pool.Exec(ctx, `ANALYZE `+b.ob.Table())
	require.NoError(t, err)
	var a1, a2 int64
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT min(id), max(id) FROM `+b.ob.Table()+` WHERE aggregate_id = 'A'`).Scan(&a1, &a2))

	// Another transaction (not a relay) row-locks the stretch.
	locker, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = locker.Rollback(ctx) }()
	_, err = locker.Exec(ctx, `SELECT 1 FROM `+b.ob.Table()+` WHERE aggregate_id = 'pad' FOR UPDATE`)
	require.NoError(t, err)

	// Relay 2 holds A1 and, when released, records its failure.
	holding, release := make(chan struct{}), make(chan struct{})
	r2done := make(chan time.Time, 1)
	failA1 := outbox.Outcome{Failed: []outbox.Failure{{ID: a1, Err: "broker said no", RetryAfter: time.Hour}}}
	if stretchFirst {
		// A relay's claim would have to pass the locked stretch too (and
		// would hold the stretch's aggregate); its failure, as it writes
		// it, is a transaction holding A's advisory lock and A1's row.
		go func() {
			err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext('cart/A'))`, tableLockKey(b)); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `SELECT 1 FROM `+b.ob.Table()+` WHERE id = $1 FOR UPDATE`, a1); err != nil {
					return err
				}
				close(holding)
				<-release
				_, err := tx.Exec(ctx, `UPDATE `+b.ob.Table()+` SET attempts = attempts + 1, last_error = 'broker said no', next_attempt_at = now() + interval '1 hour' WHERE id = $1`, a1)
				return err
			})
			if err != nil {
				t.Error(err)
			}
			r2done <- time.Now()
		}()
	} else {
		go func() {
			_, err := b.ob.Claim(ctx, 1, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
				close(holding)
				if len(recs) != 1 || recs[0].ID != a1 {
					t.Errorf("relay 2 claimed %v, want A1", recs)
					return outbox.Outcome{}
				}
				<-release
				return failA1
			})
			if err != nil {
				t.Error(err)
			}
			r2done <- time.Now()
		}()
	}
	<-holding

	var got []int64
	r1start := time.Now()
	r1done := make(chan time.Time, 1)
	go func() {
		_, err := b.ob.Claim(ctx, 10, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
			for _, r := range recs {
				got = append(got, r.ID)
			}
			return outbox.Outcome{} // released untouched
		})
		if err != nil {
			t.Error(err)
		}
		r1done <- time.Now()
	}()
	time.Sleep(10 * time.Millisecond)
	close(release)
	r2at := <-r2done
	r1at := <-r1done
	t.Logf("relay 1's claim took %v; relay 2's failure committed %v after it started", r1at.Sub(r1start), r2at.Sub(r1start))
	require.True(t, r1at.After(r2at), "the failure must commit while relay 1 claims, or this test proves nothing (relay 1 took %v)", r1at.Sub(r1start))
	require.NotContains(t, got, a2, "A2 handed out while A1 backs off")
	require.NotContains(t, got, a1, "A1 is backing off")
}

// tableLockKey is the first key of the relays' advisory locks on b's
// outbox: FNV-1a of "schema.table", as the package computes it.
func tableLockKey(b *bundle) int32 {
	s := b.schema + ".outbox"
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int32(h)
}
