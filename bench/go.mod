module github.com/choicesherpa/eventkit/bench

go 1.26

require github.com/choicesherpa/eventkit v0.0.0

replace github.com/choicesherpa/eventkit => ../
