.PHONY: test gen run
# The test command: installs what tests need, checks generated code, gofmt, vet, race tests, smoke run.
test:
	./scripts/test.sh
# Regenerate Go code from api/**/*.proto with the pinned plugins.
gen:
	./scripts/gen.sh
# Run the whole product on this machine.
run:
	go run ./cmd/kumi local
