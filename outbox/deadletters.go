package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/choicesherpa/eventkit/deadletter"
)

// QuarantineHandler is the Handler of the dead-letter records a relay
// writes for the rows it quarantines (RelayConfig.DeadLetters).
const QuarantineHandler = "outbox"

// ErrNotQuarantined is returned by RearmReplayer for a record whose row is
// no longer quarantined (re-armed already, or deleted).
var ErrNotQuarantined = errors.New("outbox: row is not quarantined")

// RearmReplayer replays the dead-letter records of quarantined outbox rows
// by re-arming the rows in Store: the relay publishes them again, with
// their event ids, and quarantines them again (writing the record back) if
// they fail again. Records of other handlers go to Next. Give it to
// deadletter.NewQueue, and the admin API replays both kinds.
type RearmReplayer struct {
	Store Store
	// Next replays every other record. Nil: they fail with
	// deadletter.ErrUnknownHandler.
	Next deadletter.Replayer
}

var _ deadletter.Replayer = RearmReplayer{}

// Replay implements deadletter.Replayer.
func (r RearmReplayer) Replay(ctx context.Context, rec deadletter.Record) error {
	if rec.Handler != QuarantineHandler {
		if r.Next == nil {
			return fmt.Errorf("%w: %q", deadletter.ErrUnknownHandler, rec.Handler)
		}
		return r.Next.Replay(ctx, rec)
	}
	if rec.Envelope == nil {
		return deadletter.ErrNoEnvelope
	}
	n, err := r.Store.Rearm(ctx, rec.Envelope.EventID)
	if err != nil {
		return fmt.Errorf("outbox: re-arm %s: %w", rec.Envelope.EventID, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotQuarantined, rec.Envelope.EventID)
	}
	return nil
}

// quarantined is a row the relay set aside in a batch, for its dead-letter
// record.
type quarantined struct {
	rec     Record
	failure Failure
	reason  string
}

// recordQuarantined writes a dead-letter record per row quarantined in a
// committed batch. A failed write is a store error: the row stays
// quarantined, listed by Store.Quarantined.
func (r *Relay) recordQuarantined(ctx context.Context, rows []quarantined) {
	if r.cfg.DeadLetters == nil || len(rows) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	now := time.Now().UTC()
	for _, q := range rows {
		env := q.rec.Envelope
		id := env.EventID.String()
		err := r.cfg.DeadLetters.Put(pctx, deadletter.Record{
			ID:            deadletter.RecordID(QuarantineHandler, id),
			Envelope:      &env,
			EventID:       id,
			EventType:     env.EventType,
			Handler:       QuarantineHandler,
			Source:        "outbox",
			SourceID:      strconv.FormatInt(q.rec.ID, 10),
			Reason:        q.reason,
			Attempts:      q.rec.Attempts + 1,
			LastError:     q.failure.Err,
			FirstFailedAt: now,
			LastFailedAt:  now,
			Status:        deadletter.StatusDead,
		})
		if err != nil {
			r.storeError(ctx, fmt.Errorf("outbox: dead-letter record of quarantined %s: %w", id, err))
		}
	}
}
