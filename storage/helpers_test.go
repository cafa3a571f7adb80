package storage

import (
	"io"
	"log/slog"
	"time"
)

var testMonth = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
