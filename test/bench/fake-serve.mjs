// A stand-in for `cifar serve` for the --spawn tests: same flags, same probe routes, answers
// /predict at once; /health echoes the arguments it was started with.
import { createServer } from 'node:http';

const args = process.argv.slice(2);
const flag = (name) => args[args.indexOf(name) + 1];
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const json = (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/health') return json({ model_version: 'spawned-1', args });
    if (req.url === '/ready') return json({ ready: true });
    json({ prediction: 3, class_name: 'cat', confidence: 0.5, model_version: 'spawned-1', cached: false });
  });
});
server.listen(Number(flag('--port')), flag('--host'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
