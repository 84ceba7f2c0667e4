package eventbus

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
)

// Upcaster turns the JSON payload of version N of an event into version N+1.
type Upcaster func(payload json.RawMessage) (json.RawMessage, error)

// Registry knows the event types an application uses and how to bring old
// versions up to date, so events stored before a schema change still decode.
// It is safe for concurrent use. The zero value is ready to use.
type Registry struct {
	mu        sync.RWMutex
	types     map[string]reflect.Type // versioned type -> Go type
	upcasters map[string]Upcaster     // versioned type vN -> upcaster to vN+1
}

// DefaultRegistry is used by Subscribe and Register when no registry is given.
var DefaultRegistry = &Registry{}

// Register adds T under T's event type to r (DefaultRegistry when r is nil).
// Registering a type twice is harmless.
func Register[T DomainEvent](r *Registry) error {
	if r == nil {
		r = DefaultRegistry
	}
	typ := eventTypeOf[T]()
	if _, err := ParseSchemaVersion(typ); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.types == nil {
		r.types = make(map[string]reflect.Type)
	}
	r.types[typ] = reflect.TypeFor[T]()
	return nil
}

// eventTypeOf returns T's event type. For a pointer type it asks a fresh
// value, so methods with value receivers are not called on a nil pointer.
func eventTypeOf[T DomainEvent]() string {
	if rt := reflect.TypeFor[T](); rt.Kind() == reflect.Pointer {
		return reflect.New(rt.Elem()).Interface().(T).EventType()
	}
	var zero T
	return zero.EventType()
}

// MustRegister is Register that panics, for package init.
func MustRegister[T DomainEvent](r *Registry) {
	if err := Register[T](r); err != nil {
		panic(err)
	}
}

// AddUpcaster registers fn as the step from fromType ("x.v1") to the next
// version ("x.v2").
func (r *Registry) AddUpcaster(fromType string, fn Upcaster) error {
	if _, err := ParseSchemaVersion(fromType); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("eventbus: nil upcaster for %q", fromType)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.upcasters == nil {
		r.upcasters = make(map[string]Upcaster)
	}
	r.upcasters[fromType] = fn
	return nil
}

// Known reports whether eventType is registered, directly or through an
// upcaster chain that reaches a registered version.
func (r *Registry) Known(eventType string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for t := eventType; ; {
		if _, ok := r.types[t]; ok {
			return true
		}
		if _, ok := r.upcasters[t]; !ok {
			return false
		}
		v, err := ParseSchemaVersion(t)
		if err != nil {
			return false
		}
		t = VersionedType(BaseType(t), v+1)
	}
}

// Upcast applies upcasters to env until it reaches target (a versioned type
// of the same base name). It returns env unchanged when it already is target.
// A missing step or a failing upcaster is a permanent error.
func (r *Registry) Upcast(env Envelope, target string) (Envelope, error) {
	if env.EventType == target {
		return env, nil
	}
	want, err := ParseSchemaVersion(target)
	if err != nil {
		return env, err
	}
	if BaseType(env.EventType) != BaseType(target) {
		return env, fmt.Errorf("%w: %q cannot become %q", ErrUnknownEventType, env.EventType, target)
	}
	have, err := ParseSchemaVersion(env.EventType)
	if err != nil {
		return env, err
	}
	if have > want {
		return env, fmt.Errorf("%w: %q is newer than %q", ErrUnknownEventType, env.EventType, target)
	}
	for have < want {
		r.mu.RLock()
		up := r.upcasters[env.EventType]
		r.mu.RUnlock()
		if up == nil {
			return env, fmt.Errorf("%w: no upcaster from %q", ErrUnknownEventType, env.EventType)
		}
		payload, err := up(env.Payload)
		if err != nil {
			return env, fmt.Errorf("%w: upcasting %s %s: %w", ErrDecode, env.EventType, env.EventID, err)
		}
		have++
		env.Payload = payload
		env.EventType = VersionedType(BaseType(env.EventType), have)
		env.SchemaVersion = have
	}
	return env, nil
}

// Decode upcasts env to the newest registered version of its base type and
// decodes the payload into a new value of the registered Go type. Unknown
// types and undecodable payloads are permanent errors.
func (r *Registry) Decode(env Envelope) (DomainEvent, error) {
	target, rt := r.newest(env.EventType)
	if rt == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEventType, env.EventType)
	}
	env, err := r.Upcast(env, target)
	if err != nil {
		return nil, err
	}
	ptr := reflect.New(rt)
	if err := json.Unmarshal(env.Payload, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrDecode, env.EventType, env.EventID, err)
	}
	ev, ok := ptr.Elem().Interface().(DomainEvent)
	if !ok {
		ev, ok = ptr.Interface().(DomainEvent)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a DomainEvent", ErrDecode, rt)
	}
	return ev, nil
}

// newest finds the highest registered version reachable from eventType.
func (r *Registry) newest(eventType string) (string, reflect.Type) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var bestType string
	var best reflect.Type
	for t := eventType; ; {
		if rt, ok := r.types[t]; ok {
			bestType, best = t, rt
		}
		if _, ok := r.upcasters[t]; !ok {
			break
		}
		v, err := ParseSchemaVersion(t)
		if err != nil {
			break
		}
		t = VersionedType(BaseType(t), v+1)
	}
	return bestType, best
}

// DecodeAs decodes env into T, upcasting older versions of T's type through
// r (DefaultRegistry when nil). Unknown types and bad payloads are permanent.
func DecodeAs[T DomainEvent](r *Registry, env Envelope) (T, error) {
	var zero, out T
	if r == nil {
		r = DefaultRegistry
	}
	env, err := r.Upcast(env, eventTypeOf[T]())
	if err != nil {
		return zero, err
	}
	if err := json.Unmarshal(env.Payload, &out); err != nil {
		return zero, fmt.Errorf("%w: %s %s: %w", ErrDecode, env.EventType, env.EventID, err)
	}
	return out, nil
}
