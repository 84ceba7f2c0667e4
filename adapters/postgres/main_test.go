package postgres_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// c6HelperEnv makes the test binary run as TestC6RelayKilledMidBatch's
// relay process instead of running the tests.
const c6HelperEnv = "EVENTKIT_C6_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(c6HelperEnv) == "1" {
		os.Exit(runC6Helper())
	}
	if point := os.Getenv(i2HelperEnv); point != "" {
		os.Exit(runI2Helper(point))
	}
	// Every relay, listener, notifier and pool a test starts is stopped by
	// the time the tests end.
	goleak.VerifyTestMain(m)
}
