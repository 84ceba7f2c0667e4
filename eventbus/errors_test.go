package eventbus_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/choicesherpa/eventkit/eventbus"
)

func TestPermanent(t *testing.T) {
	t.Parallel()
	require.NoError(t, eventbus.Permanent(nil))
	require.False(t, eventbus.IsPermanent(nil))

	base := errors.New("business rule")
	p := eventbus.Permanent(base)
	require.True(t, eventbus.IsPermanent(p))
	require.ErrorIs(t, p, base)
	require.Equal(t, "permanent: business rule", p.Error())

	// Idempotent: wrapping twice does not nest.
	require.Same(t, p, eventbus.Permanent(p))
	wrapped := fmt.Errorf("ctx: %w", p)
	require.Same(t, wrapped, eventbus.Permanent(wrapped))
	require.True(t, eventbus.IsPermanent(wrapped), "permanence survives wrapping")

	var pe *eventbus.PermanentError
	require.ErrorAs(t, wrapped, &pe)
	require.Equal(t, base, pe.Err)

	require.False(t, eventbus.IsPermanent(base))
	require.False(t, eventbus.IsPermanent(eventbus.ErrHandlerTimeout))
	for _, sentinel := range []error{eventbus.ErrInvalidEnvelope, eventbus.ErrUnknownEventType, eventbus.ErrDecode} {
		require.True(t, eventbus.IsPermanent(fmt.Errorf("x: %w", sentinel)), "%v is permanent without Permanent()", sentinel)
	}
}

func TestHandlerError(t *testing.T) {
	t.Parallel()
	id := eventbus.MustParseEventID("0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a")
	cause := eventbus.Permanent(eventbus.ErrDecode)
	err := fmt.Errorf("publish: %w", &eventbus.HandlerError{Handler: "dash", EventID: id, EventType: "a.v1", Err: cause})

	var he *eventbus.HandlerError
	require.ErrorAs(t, err, &he)
	require.Equal(t, "dash", he.Handler)
	require.Equal(t, id, he.EventID)
	require.ErrorIs(t, err, eventbus.ErrDecode)
	require.True(t, eventbus.IsPermanent(err))
	require.Contains(t, err.Error(), `handler "dash" on a.v1 0190a5b0-7c3e-7d1a-9b2c-3f4e5d6c7b8a`)

	// Joined handler errors keep every cause reachable.
	joined := errors.Join(
		&eventbus.HandlerError{Handler: "a", Err: errors.New("boom")},
		&eventbus.HandlerError{Handler: "b", Err: &eventbus.PanicError{Value: "oops"}},
	)
	require.ErrorIs(t, joined, eventbus.ErrPanic)
	require.False(t, eventbus.IsPermanent(joined))
}

func TestPanicError(t *testing.T) {
	t.Parallel()
	pe := &eventbus.PanicError{Value: 42, Stack: []byte("stack")}
	require.ErrorIs(t, pe, eventbus.ErrPanic)
	require.ErrorIs(t, fmt.Errorf("w: %w", pe), eventbus.ErrPanic)
	require.NotErrorIs(t, pe, eventbus.ErrClosed)
	require.Contains(t, pe.Error(), "42")
	var target *eventbus.PanicError
	require.ErrorAs(t, fmt.Errorf("w: %w", pe), &target)
	require.Equal(t, 42, target.Value)
}
