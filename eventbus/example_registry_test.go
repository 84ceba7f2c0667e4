package eventbus_test

import (
	"encoding/json"
	"fmt"

	"github.com/choicesherpa/eventkit/eventbus"
)

// PriceSetV2 is version 2 of an event whose version 1 carried a float
// "price" in euros; version 2 carries integer cents.
type PriceSetV2 struct {
	SKU   string `json:"sku"`
	Cents int    `json:"cents"`
}

func (PriceSetV2) EventType() string     { return "example.price_set.v2" }
func (e PriceSetV2) AggregateID() string { return e.SKU }
func (PriceSetV2) AggregateType() string { return "product" }

// An upcaster lets events stored as v1, before the schema changed, decode
// into the v2 type.
func ExampleRegistry_AddUpcaster() {
	reg := &eventbus.Registry{}
	eventbus.MustRegister[PriceSetV2](reg)
	err := reg.AddUpcaster("example.price_set.v1", func(p json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			SKU   string  `json:"sku"`
			Price float64 `json:"price"`
		}
		if err := json.Unmarshal(p, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(PriceSetV2{SKU: v1.SKU, Cents: int(v1.Price*100 + 0.5)})
	})
	if err != nil {
		panic(err)
	}

	// An old event, as a store or stream still holds it.
	old := eventbus.Envelope{
		EventID:       eventbus.NewEventID(),
		EventType:     "example.price_set.v1",
		SchemaVersion: 1,
		AggregateID:   "sku-1",
		Payload:       json.RawMessage(`{"sku":"sku-1","price":12.5}`),
	}
	ev, err := eventbus.DecodeAs[PriceSetV2](reg, old)
	fmt.Printf("%+v %v\n", ev, err)

	// A version this code cannot bring to v2 (here a newer one, published
	// by an upgraded service) is a permanent error: straight to the DLQ.
	old.EventType, old.SchemaVersion = "example.price_set.v3", 3
	_, err = eventbus.DecodeAs[PriceSetV2](reg, old)
	fmt.Println(eventbus.IsPermanent(err))
	// Output:
	// {SKU:sku-1 Cents:1250} <nil>
	// true
}
