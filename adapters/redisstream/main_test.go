package redisstream

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	if os.Getenv("EVENTKIT_TEST_LOG") != "1" {
		redis.SetLogger(quietRedisLogger{}) // fault tests make the pool log every failed dial
	}
	goleak.VerifyTestMain(m)
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}
