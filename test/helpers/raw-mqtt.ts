import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

/** A bare MQTT connection for sending exactly the bytes a test wants, malformed ones included. */
export class RawMqtt {
  readonly packets: Packet[] = [];
  closed = false;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    this.parser.on('packet', (p) => {
      this.packets.push(p);
      this.wake();
    });
    this.parser.on('error', () => {});
    socket.on('data', (d) => this.parser.parse(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number, localAddress?: string): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) }, () => resolve(new RawMqtt(socket)));
      socket.once('error', reject);
    });
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  send(packet: Packet | Buffer) {
    this.socket.write(Buffer.isBuffer(packet) ? packet : mqttPacket.generate(packet));
  }

  connectPacket(clientId: string, username?: string, password?: string, keepalive = 60): Packet {
    return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive, ...(username ? { username } : {}), ...(password ? { password: Buffer.from(password) } : {}) } as Packet;
  }

  async next(cmd: string, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => p.cmd === cmd);
      if (i >= 0) return this.packets.splice(i, 1)[0];
      if (this.closed || Date.now() > deadline) return null;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async waitClosed(timeoutMs = 20_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  end() {
    this.socket.destroy();
  }
}
