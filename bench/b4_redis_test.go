package bench

import (
	"context"
	"testing"
	"time"
)

func benchRedisCfg(b *testing.B) Config {
	env := DetectEnv(context.Background())
	if !env.HasRedis() {
		b.Skip("redis not reachable")
	}
	return Config{Mode: Tiny, Env: env, RunTimeout: time.Minute}.WithDefaults()
}

func BenchmarkB4RedisPublish16(b *testing.B) { BenchTrial(b, oursPublishSetup(benchRedisCfg(b), 16)) }
func BenchmarkB5RedisPublish1(b *testing.B)  { BenchTrial(b, oursPublishSetup(benchRedisCfg(b), 1)) }
func BenchmarkB6RedisConsume(b *testing.B)   { BenchTrial(b, oursConsumeSetup(benchRedisCfg(b))) }

func BenchmarkB5RawXAdd(b *testing.B)        { BenchTrial(b, rawPublishSetup(benchRedisCfg(b), 1)) }
func BenchmarkB4RawPipeline100(b *testing.B) { BenchTrial(b, rawPublishSetup(benchRedisCfg(b), 100)) }
