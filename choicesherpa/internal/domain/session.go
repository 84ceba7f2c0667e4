package domain

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxTitleLength is the longest session title, in characters, after trimming.
const MaxTitleLength = 500

// SessionStatus is active or archived.
type SessionStatus string

// Session statuses.
const (
	SessionActive   SessionStatus = "active"
	SessionArchived SessionStatus = "archived"
)

// Session is one decision context owned by one user. It references its
// cycles by id; CycleIDs grows only through AddCycle (the SessionCycleTracker).
type Session struct {
	ID          uuid.UUID     `json:"id"`
	UserID      string        `json:"user_id"`
	Title       string        `json:"title"`
	Description *string       `json:"description,omitempty"`
	Status      SessionStatus `json:"status"`
	CycleIDs    []uuid.UUID   `json:"cycle_ids"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
}

// NewSession validates and builds an active session.
func NewSession(userID, title string, description *string, now time.Time) (*Session, error) {
	if strings.TrimSpace(userID) == "" {
		return nil, Validationf("invalid_user", "user id must not be empty")
	}
	t, err := validateTitle(title)
	if err != nil {
		return nil, err
	}
	var desc *string
	if description != nil {
		d := strings.TrimSpace(*description)
		desc = &d
	}
	return &Session{
		ID: NewID(), UserID: userID, Title: t, Description: desc, Status: SessionActive,
		CycleIDs: []uuid.UUID{}, CreatedAt: now, UpdatedAt: now,
	}, nil
}

func validateTitle(title string) (string, error) {
	t := strings.TrimSpace(title)
	if t == "" {
		return "", Validationf("invalid_title", "title must not be empty")
	}
	if utf8.RuneCountInString(t) > MaxTitleLength {
		return "", Validationf("invalid_title", "title must be at most %d characters", MaxTitleLength)
	}
	return t, nil
}

// Authorize returns ErrForbidden unless userID owns the session.
func (s *Session) Authorize(userID string) error {
	if userID == "" || s.UserID != userID {
		return Forbiddenf("forbidden", "user is not authorized to access this session")
	}
	return nil
}

func (s *Session) ensureMutable() error {
	if s.Status == SessionArchived {
		return Conflictf("session_archived", "session %s is archived", s.ID)
	}
	return nil
}

// Rename sets a new title and returns the old one.
func (s *Session) Rename(title string, now time.Time) (string, error) {
	if err := s.ensureMutable(); err != nil {
		return "", err
	}
	t, err := validateTitle(title)
	if err != nil {
		return "", err
	}
	old := s.Title
	s.Title = t
	s.UpdatedAt = now
	return old, nil
}

// Archive moves active -> archived; archiving twice is an invalid transition.
func (s *Session) Archive(now time.Time) error {
	if s.Status != SessionActive {
		return Conflictf("invalid_transition", "session cannot go from %s to archived", s.Status)
	}
	s.Status = SessionArchived
	s.UpdatedAt = now
	return nil
}

// AddCycle appends id to the cycle list. It reports added=false (and no
// error) when the cycle is already listed, and isRoot=true when id is the
// first cycle.
func (s *Session) AddCycle(id uuid.UUID, now time.Time) (added, isRoot bool, err error) {
	if slices.Contains(s.CycleIDs, id) {
		return false, len(s.CycleIDs) > 0 && s.CycleIDs[0] == id, nil
	}
	if err := s.ensureMutable(); err != nil {
		return false, false, err
	}
	s.CycleIDs = append(s.CycleIDs, id)
	s.UpdatedAt = now
	return true, len(s.CycleIDs) == 1, nil
}

// Clone returns a deep copy.
func (s *Session) Clone() *Session {
	c := *s
	c.CycleIDs = slices.Clone(s.CycleIDs)
	if c.CycleIDs == nil {
		c.CycleIDs = []uuid.UUID{}
	}
	if s.Description != nil {
		d := *s.Description
		c.Description = &d
	}
	return &c
}

// NewID returns a fresh, time-ordered (UUIDv7) identifier.
func NewID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}
