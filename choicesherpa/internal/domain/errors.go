package domain

import (
	"errors"
	"fmt"
)

// Error kinds. Every error this package returns wraps exactly one of them, so
// a transport maps it with errors.Is: validation 400, forbidden 403, not
// found 404, conflict (invalid state transition, archived aggregate) 409.
var (
	ErrValidation = errors.New("validation failed")
	ErrForbidden  = errors.New("forbidden")
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")
)

// Error is a rule violation: a kind, a stable machine code and a message
// safe to show to the user (it never contains message content).
type Error struct {
	Kind error
	// Code is a stable snake_case identifier such as "invalid_transition".
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the kind, so errors.Is(err, ErrConflict) works.
func (e *Error) Unwrap() error { return e.Kind }

func newErr(kind error, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Validationf returns an ErrValidation error.
func Validationf(code, format string, args ...any) error {
	return newErr(ErrValidation, code, format, args...)
}

// Conflictf returns an ErrConflict error.
func Conflictf(code, format string, args ...any) error {
	return newErr(ErrConflict, code, format, args...)
}

// NotFoundf returns an ErrNotFound error.
func NotFoundf(code, format string, args ...any) error {
	return newErr(ErrNotFound, code, format, args...)
}

// Forbiddenf returns an ErrForbidden error.
func Forbiddenf(code, format string, args ...any) error {
	return newErr(ErrForbidden, code, format, args...)
}

// CodeOf returns the code of the *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
