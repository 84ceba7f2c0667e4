package redisstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/choicesherpa/eventkit/deadletter"
)

// Replay sends rec's event back to the handler (consumer group) that failed
// it, and to no other: it is appended, unchanged (same event id, so an
// idempotent handler that already applied it skips it), to the group's own
// replay stream (ReplayStream), which every subscription of that name reads
// in the same XREADGROUP as its main streams. Other groups never see the
// replay. A replayed event that fails again is dead-lettered again under the
// same record id; the store keeps its replay count, so it does not loop.
//
// Replay only appends; marking the record replayed is the caller's (the
// dead-letter queue's) job.
func (b *Bus) Replay(ctx context.Context, rec deadletter.Record) error {
	if rec.Envelope == nil {
		return deadletter.ErrNoEnvelope
	}
	if rec.Handler == "" {
		return errors.New("redisstream: replay: record has no handler")
	}
	fields, err := encodeEntry(rec.Envelope, b.cfg.MaxPayloadBytes)
	if err != nil {
		return fmt.Errorf("redisstream: replay %s: %w", rec.ID, err)
	}
	st := b.ReplayStream(rec.Handler)
	b.noteStream(st)
	if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: st, ID: "*", Values: fields}).Err(); err != nil {
		return fmt.Errorf("redisstream: replay %s: %w", rec.ID, err)
	}
	return nil
}
