package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/choicesherpa/eventkit/outbox"
	"github.com/stretchr/testify/require"
)

// The claim's order check, in the race it exists for: relay 2 holds cart
// A's first row A1 while relay 1's claim scan passes it; relay 2's publish
// fails and it commits A1 as backing off while relay 1's scan is still
// running (a long stretch of rows held back by a backing-off row lies in between, or, in
// the second case, before A1, so that relay 1 reaches A1 only after the
// failure committed and sees it through a row lock re-check); relay 1 then
// gets A's lock and reaches A2. Without the check, taken in a fresh snapshot
// once the claim holds its locks, relay 1 would publish A2 while A1 waits
// to be retried.
func TestClaimDoesNotOvertakeARowFailedMeanwhile(t *testing.T) {
	t.Parallel()
	for _, padFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("pad_first=%v", padFirst), func(t *testing.T) {
			b := setup(t)
			ctx := context.Background()
			pad := func() {
				t.Helper()
				// Rows of another cart held back by its first row, which
				// backs off: the scan checks each against that row on its
				// way past them in id order, which takes a while.
				_, err := b.pool.Exec(ctx, `INSERT INTO `+b.ob.Table()+` (event_id, event_type, schema_version, aggregate_type, aggregate_id, payload, occurred_at, attempts, next_attempt_at)
SELECT gen_random_uuid(), 'cart.item_added.v1', 1, 'cart', 'pad', '{}', now(),
       CASE WHEN g = 1 THEN 1 ELSE 0 END, CASE WHEN g = 1 THEN now() + interval '1 hour' ELSE now() END
FROM generate_series(1, $1) g ORDER BY g`, size(2_000_000))
				require.NoError(t, err)
			}
			if padFirst {
				pad()
			}
			b.write(t, newEnv("A", 1))
			if !padFirst {
				pad()
			}
			b.write(t, newEnv("A", 2))
			_, err := b.pool.Exec(ctx, `ANALYZE `+b.ob.Table())
			require.NoError(t, err)
			var a1, a2 int64
			require.NoError(t, b.pool.QueryRow(ctx, `SELECT min(id), max(id) FROM `+b.ob.Table()+` WHERE aggregate_id = 'A'`).Scan(&a1, &a2))

			// Relay 2 claims A1 and holds it until released.
			holding, release := make(chan struct{}), make(chan struct{})
			r2done := make(chan time.Time, 1)
			go func() {
				_, err := b.ob.Claim(ctx, 1, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
					if len(recs) != 1 || recs[0].ID != a1 {
						t.Errorf("relay 2 claimed %v, want A1", recs)
						close(holding)
						return outbox.Outcome{}
					}
					close(holding)
					<-release
					return outbox.Outcome{Failed: []outbox.Failure{{ID: a1, Err: "broker said no", RetryAfter: time.Hour}}}
				})
				if err != nil {
					t.Error(err)
				}
				r2done <- time.Now()
			}()
			<-holding

			// Relay 1 claims while relay 2 still holds A1; relay 2's
			// failure commits while relay 1 is still scanning.
			var got []int64
			r1start := time.Now()
			r1done := make(chan time.Time, 1)
			go func() {
				_, err := b.ob.Claim(ctx, 10, func(ctx context.Context, recs []outbox.Record) outbox.Outcome {
					for _, r := range recs {
						got = append(got, r.ID)
					}
					return outbox.Outcome{} // release untouched
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
			t.Logf("relay 1's claim took %v; relay 2 committed the failure %v after it started", r1at.Sub(r1start), r2at.Sub(r1start))
			require.True(t, r1at.After(r2at), "the failure must commit while relay 1 claims, or this test proves nothing (relay 1 took %v)", r1at.Sub(r1start))
			require.NotContains(t, got, a2, "A2 handed out while A1 backs off")
			require.NotContains(t, got, a1, "A1 is backing off")
		})
	}
}
