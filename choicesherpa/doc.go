// Package choicesherpa is the reference application built on eventkit: a
// person works through a decision with the PrOACT method and an AI
// facilitator, every step raises a domain event, and a live dashboard follows.
package choicesherpa
