package bench

// The peers later cases measure against (BENCHMARKS.md). They are
// referenced here so that bench/go.mod keeps them pinned before the cases
// that use them exist: watermill-redisstream (B4-B7, B9), watermill-sql/v4
// (B8-B10) and gorilla/websocket (B12, B13).
import (
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/gorilla/websocket"
)

var (
	_ = redisstream.PublisherConfig{}
	_ = wmsql.PublisherConfig{}
	_ = websocket.Upgrader{}
)
