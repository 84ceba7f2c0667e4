package eventbus_test

// Event types shared by the tests in this package.

type sessionCreated struct {
	SessionID string `json:"session_id"`
	Title     string `json:"title"`
}

func (sessionCreated) EventType() string     { return "session.created.v1" }
func (e sessionCreated) AggregateID() string { return e.SessionID }
func (sessionCreated) AggregateType() string { return "session" }

type sessionRenamed struct {
	SessionID string `json:"session_id"`
	Name      string `json:"name"`
}

func (sessionRenamed) EventType() string     { return "session.renamed.v1" }
func (e sessionRenamed) AggregateID() string { return e.SessionID }
func (sessionRenamed) AggregateType() string { return "session" }

// orderPlaced is used by the bus tests; Seq lets a test check ordering.
type orderPlaced struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (orderPlaced) EventType() string     { return "order.placed.v1" }
func (e orderPlaced) AggregateID() string { return e.OrderID }
func (orderPlaced) AggregateType() string { return "order" }

type orderPaid struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

func (orderPaid) EventType() string     { return "order.paid.v1" }
func (e orderPaid) AggregateID() string { return e.OrderID }
func (orderPaid) AggregateType() string { return "order" }

// badType has an event type without a version suffix.
type badType struct{}

func (badType) EventType() string     { return "Order Placed" }
func (badType) AggregateID() string   { return "x" }
func (badType) AggregateType() string { return "x" }

// unencodable cannot be marshalled to JSON.
type unencodable struct {
	C chan int `json:"c"`
}

func (unencodable) EventType() string     { return "broken.event.v1" }
func (unencodable) AggregateID() string   { return "x" }
func (unencodable) AggregateType() string { return "x" }
