# Static scaler and scalerctl on distroless: no shell, no libc, non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/scaler ./cmd/scaler \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/scalerctl ./cmd/scalerctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/scaler /out/scalerctl /usr/local/bin/
USER 65532:65532
EXPOSE 9090 9091
ENTRYPOINT ["/usr/local/bin/scaler"]
