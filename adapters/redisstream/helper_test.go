package redisstream

const helperEnv = "GO_WANT_HELPER_PROCESS"

func runHelper() int { return 2 }
