// Package domain holds the Choice Sherpa aggregates (Session, Cycle with its
// nine PrOACT components, Conversation) and their rules, exactly as
// shared/design/DOMAIN.md fixes them. It is pure: no I/O, no clock (callers
// pass the time), no events (the app layer raises them from what these
// methods return).
//
// Every rule violation is an *Error whose Kind is one of ErrValidation (400),
// ErrForbidden (403), ErrNotFound (404) or ErrConflict (409); match it with
// errors.Is. Aggregates are not safe for concurrent use; repositories hand out
// copies.
package domain
