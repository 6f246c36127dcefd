import { blockCommands, parseNginxConfig } from '../../src/engine/evidence'

test('finds the ports nginx listens on and its log files in an `nginx -T` dump', () => {
  const dump = [
    '# configuration file /etc/nginx/nginx.conf:',
    'error_log /var/log/nginx/error.log warn;',
    'http {',
    '  access_log /var/log/nginx/access.log combined;',
    '  access_log off;',
    '  server { listen 8080; listen [::]:8443 ssl http2; listen unix:/run/x.sock; }',
    '  server { listen 127.0.0.1:9000 default_server; # listen 1234;',
    '    listen localhost; }',
    '}'
  ].join('\n')
  expect(parseNginxConfig(dump)).toEqual({
    ports: [80, 8080, 8443, 9000],
    logFiles: ['/var/log/nginx/error.log', '/var/log/nginx/access.log']
  })
  expect(blockCommands([8080])).toEqual([
    'sudo iptables -I INPUT -p tcp --dport 8080 -j DROP',
    'sudo ip6tables -I INPUT -p tcp --dport 8080 -j DROP'
  ])
})
