package ai_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running (an
// abandoned stream or an unclosed response body).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
