// Starts @firestore-emulator/server on 127.0.0.1 only (its own start() binds 0.0.0.0) and
// prints "listening 127.0.0.1:<port>" once it accepts connections. Usage: node serve.js [port]
"use strict";
const { ServerCredentials } = require("@grpc/grpc-js");
const { FirestoreServer } = require("@firestore-emulator/server");

const requested = Number.parseInt(process.argv[2] || "0", 10);
const emulator = new FirestoreServer();
// `server` is the emulator's grpc-js Server (a TypeScript-private field, public at run time).
emulator.server.bindAsync(
  `127.0.0.1:${requested}`,
  ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) {
      console.error(`cannot bind 127.0.0.1:${requested}: ${err.message}`);
      process.exit(1);
    }
    console.log(`listening 127.0.0.1:${port}`);
  },
);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    emulator.stop();
    process.exit(0);
  });
}
