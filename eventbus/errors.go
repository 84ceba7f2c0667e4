package eventbus

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the errors returned by this
// package and its adapters wrap them with detail.
var (
	// ErrClosed is returned by operations on a closed bus, subscription or relay.
	ErrClosed = errors.New("eventbus: closed")
	// ErrInvalidEnvelope reports an envelope that is missing required fields or
	// has malformed ones (bad id, bad type string, invalid JSON payload).
	ErrInvalidEnvelope = errors.New("eventbus: invalid envelope")
	// ErrUnknownEventType reports an event type no registry entry knows.
	ErrUnknownEventType = errors.New("eventbus: unknown event type")
	// ErrDecode reports a payload that cannot be decoded into its registered type.
	ErrDecode = errors.New("eventbus: cannot decode payload")
	// ErrHandlerTimeout is returned (wrapped) when a handler exceeds its timeout.
	ErrHandlerTimeout = errors.New("eventbus: handler timed out")
	// ErrPanic is matched by every *PanicError.
	ErrPanic = errors.New("eventbus: handler panicked")
	// ErrDuplicateSubscription is returned when a handler name is registered twice on one bus.
	ErrDuplicateSubscription = errors.New("eventbus: duplicate subscription name")
)

// PermanentError marks an error that retrying cannot fix (bad input, unknown
// type, a business rule). Retry middleware and the durable buses skip their
// remaining attempts and dead-letter the event at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that retries are skipped. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	var p *PermanentError
	if errors.As(err, &p) {
		return err
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or anything it wraps) is permanent.
// Invalid envelopes, unknown types and undecodable payloads are permanent
// whether or not they were wrapped with Permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *PermanentError
	return errors.As(err, &p) ||
		errors.Is(err, ErrInvalidEnvelope) ||
		errors.Is(err, ErrUnknownEventType) ||
		errors.Is(err, ErrDecode)
}

// HandlerError tells which handler failed on which event.
type HandlerError struct {
	Handler   string
	EventID   EventID
	EventType string
	Err       error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("handler %q on %s %s: %v", e.Handler, e.EventType, e.EventID, e.Err)
}
func (e *HandlerError) Unwrap() error { return e.Err }

// PanicError is a recovered handler panic. It matches ErrPanic.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("eventbus: handler panicked: %v", e.Value) }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }
